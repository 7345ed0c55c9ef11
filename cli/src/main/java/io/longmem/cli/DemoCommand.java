package io.longmem.cli;

import ai.djl.Device;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.EncodeSpec;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import io.longmem.summarize.BookSummarizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The whole path on one machine with shipped defaults: Spark encodes the sample corpus with a small
 * checkpoint, a memory service serves the collection on loopback, the worker summarizes one book
 * against it with kNN memory. Each step says what it did and how fast.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Encode the sample corpus with Spark, serve it, summarize a book against the service.")
public final class DemoCommand implements Callable<Integer> {
  @Option(names = "--corpus", paramLabel = "DIR", description = "text files, one book each (default: conf/samples/corpus)")
  Path corpus;
  @Option(names = "--model", paramLabel = "DIR",
      description = "checkpoint (default: a small random LongLLaMA-shaped one, generated once into --work)")
  Path model;
  @Option(names = "--work", paramLabel = "DIR", description = "where the collection goes (default: target/demo)")
  Path work;
  @Option(names = "--book", defaultValue = "lighthouse.txt", description = "the document to summarize (default: ${DEFAULT-VALUE})")
  String book;
  @Option(names = "--memory-top-k", defaultValue = "64") int topK;
  @Option(names = "--max-new-tokens", defaultValue = "32") int maxNewTokens;

  @Override
  public Integer call() throws Exception {
    Path home = Path.of(System.getProperty("longmem.home", "."));
    Path corpusDir = corpus != null ? corpus : home.resolve("conf/samples/corpus");
    Path workDir = (work != null ? work : home.resolve("target/demo")).toAbsolutePath();
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    Path modelDir = model != null ? model : workDir.resolve("model");
    if (model == null && !Files.exists(modelDir.resolve("config.json"))) {
      // Real LongLLaMA weights cannot be downloaded here: a deterministic random checkpoint with
      // LongLLaMA's structure (memory layers 1 and 2 of 4) and the OpenLLaMA v2 tokenizer stands in.
      RandomCheckpoint.write(modelDir, new RandomCheckpoint.Shape(32000, 128, 4, 344, 4, 256, 128, new int[] {1, 2}), 42);
      Files.copy(home.resolve("conf/demo/tokenizer.model"), modelDir.resolve("tokenizer.model"));
    }
    out.println("[0/3] model: " + modelDir + (model == null ? " (small random checkpoint: the summary below is noise; "
        + "the path it takes is the real one)" : ""));

    Path collection = workDir.resolve("collection");
    io.longmem.io.FileTrees.deleteRecursively(collection);
    EncodeJob.Report encoded;
    try (SparkSession spark = SparkSession.builder().master("local[*]").appName("longmem demo")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate()) {
      encoded = EncodeJob.run(spark, new EncodeSpec(modelDir.toAbsolutePath().toString(), null, null, "Flat", 65536, 2, 4,
          16384, 1, new Corpus.Spec(corpusDir.toAbsolutePath().toString(), Corpus.Format.TEXT, "id", "text", "token_ids")),
          collection, false, 10);
    }
    out.println("[1/3] encode (Spark local[*]): " + encoded.summary());

    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    conf.collections.put("samples", collection.toString());
    Checkpoint ckpt = Checkpoint.open(modelDir);
    try (MemoryServer server = MemoryServer.start(conf)) {
      String uri = "grpc://127.0.0.1:" + server.port();
      var c = server.node().collections().get("samples");
      out.printf(Locale.ROOT, "[2/3] serve: memory service on %s, collection 'samples' (%d tokens, %d shards, %s)%n",
          uri, c.manifest().rows(), c.manifest().shards().size(), c.manifest().indexFactory());
      try (LongLlama m = LongLlama.load(ckpt, Device.cpu()); MemoryEndpoint endpoint = MemoryEndpoint.remote(uri)) {
        SentencePieceTokenizer tok = SentencePieceTokenizer.load(ckpt.tokenizerModel());
        ServiceMemory memory = new ServiceMemory(endpoint, new ServiceMemory.Options(List.of("samples"), List.of(book),
            topK, 0, 0, 30_000, 3), m.config(), ckpt.fingerprint(), 1);
        long bookTokens = c.manifest().shards().stream().flatMap(sh -> sh.documents().stream())
            .filter(d -> d.id().equals(book)).mapToLong(d -> d.end() - d.begin()).sum();
        out.printf("[3/3] summarize '%s' (%d tokens, in memory from the collection) against %s, top-%d pairs per head "
            + "and query:%n", book, bookTokens, uri, topK);
        BookSummarizer.Result r = new BookSummarizer(m, tok).summarize(null, BookSummarizer.DEFAULT_INSTRUCTION, memory,
            GenerationOptions.greedy(maxNewTokens, -1, m.config().lastContextLength()), out::print);
        out.println();
        out.println("      " + r.stats());
      }
    }
    return 0;
  }
}
