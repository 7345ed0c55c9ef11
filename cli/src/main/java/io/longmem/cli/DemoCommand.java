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
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import io.longmem.passkey.Haystack;
import io.longmem.passkey.Passkey;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The whole path on one machine with shipped defaults: a haystack of filler with a pass key hidden
 * in it is written beside the sample corpus, Spark encodes them with the model trained here and
 * shipped in the repository, a memory service serves the collection on loopback, and the worker
 * asks for the pass key with only the memory it fetches by kNN over gRPC. Each step says what it
 * did and how fast; the last says whether the answer was right.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Encode a passkey haystack and the sample corpus with Spark, serve them, ask for the key against "
        + "the service.")
public final class DemoCommand implements Callable<Integer> {
  @Option(names = "--corpus", paramLabel = "DIR", description = "text files encoded beside the haystack "
      + "(default: conf/samples/corpus)")
  Path corpus;
  @Option(names = "--model", paramLabel = "DIR", description = "checkpoint (default: the shipped model, "
      + BenchCommand.SHIPPED_MODEL + ")")
  Path model;
  @Option(names = "--work", paramLabel = "DIR", description = "where the corpus and collection go (default: target/demo)")
  Path work;
  @Option(names = "--tokens", defaultValue = "131072", description = "haystack length in tokens (default: ${DEFAULT-VALUE})")
  int tokens;
  @Option(names = "--seed", description = "seed of the key and its depth (default: a new one each run)") Long seed;
  @Option(names = "--memory-top-k", defaultValue = "" + BenchCommand.SHIPPED_MODEL_TOP_K,
      description = "pairs per head and query (default: the shipped model's, ${DEFAULT-VALUE})") int topK;

  @Override
  public Integer call() throws Exception {
    if (tokens < 256) {
      throw new io.longmem.io.InputException("--tokens must be >= 256, got " + tokens);
    }
    Path home = Path.of(System.getProperty("longmem.home", "."));
    Path corpusDir = corpus != null ? corpus : home.resolve("conf/samples/corpus");
    Path workDir = (work != null ? work : home.resolve("target/demo")).toAbsolutePath();
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    Path modelDir = model != null ? model : home.resolve(BenchCommand.SHIPPED_MODEL);
    boolean standIn = false;
    if (model == null && !Files.exists(modelDir.resolve("config.json"))) {
      // no trained model in this tree: a deterministic random one with LongLLaMA's structure stands in
      // (its answer is noise; the path it takes is the real one)
      modelDir = workDir.resolve("random-model");
      standIn = true;
      if (!Files.exists(modelDir.resolve("config.json"))) {
        RandomCheckpoint.write(modelDir, new RandomCheckpoint.Shape(32000, 128, 4, 344, 4, 256, 128, new int[] {1, 2}), 42);
        Files.copy(home.resolve("conf/demo/tokenizer.model"), modelDir.resolve("tokenizer.model"));
      }
    }
    Checkpoint ckpt = Checkpoint.open(modelDir);
    if (ckpt.tokenizerModel() == null) {
      throw new io.longmem.io.InputException("the demo needs a checkpoint with its tokenizer.model: " + modelDir);
    }
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(ckpt.tokenizerModel());
    out.println("[0/4] model: " + modelDir + (standIn ? " (no trained model in " + BenchCommand.SHIPPED_MODEL
        + ": a small random checkpoint, so the answer is noise; the path it takes is the real one)"
        : model == null ? " (trained here by bin/longmem train: " + BenchCommand.SHIPPED_MODEL + "/TRAINING.md)" : ""));

    long s = seed != null ? seed : System.nanoTime();
    Haystack haystack = Haystack.make(tok, tokens, new Random(s));
    Path texts = workDir.resolve("corpus");
    io.longmem.io.FileTrees.deleteRecursively(texts);
    Files.createDirectories(texts);
    try (var books = Files.list(corpusDir)) {
      for (Path b : (Iterable<Path>) books.filter(Files::isRegularFile)::iterator) {
        Files.copy(b, texts.resolve(b.getFileName()));
      }
    }
    Files.writeString(texts.resolve(HAYSTACK), haystack.text());
    out.printf(Locale.ROOT, "[1/4] haystack: %s, %,d tokens of filler with a pass key hidden at depth %.0f%% "
        + "(seed %d), beside the sample corpus in %s%n", HAYSTACK, haystack.ids(tok).length, 100 * haystack.depth(), s,
        texts);

    Path collection = workDir.resolve("collection");
    io.longmem.io.FileTrees.deleteRecursively(collection);
    EncodeJob.Report encoded;
    try (SparkSession spark = SparkSession.builder().master("local[*]").appName("longmem demo")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate()) {
      // read in linear time (--read-memory knn): a dense read of a long haystack is quadratic
      encoded = EncodeJob.run(spark, new EncodeSpec(modelDir.toAbsolutePath().toString(), null, null, "Flat", 65536, 2, 4,
          16384, 1, new Corpus.Spec(texts.toString(), Corpus.Format.TEXT, "id", "text", "token_ids"), "knn", null),
          collection, false, 10);
    }
    out.println("[2/4] encode (Spark local[*], --read-memory knn): " + encoded.summary());

    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    conf.collections.put("demo", collection.toString());
    try (MemoryServer server = MemoryServer.start(conf)) {
      String uri = "grpc://127.0.0.1:" + server.port();
      var c = server.node().collections().get("demo");
      out.printf(Locale.ROOT, "[3/4] serve: memory service on %s, collection 'demo' (%,d tokens, %d documents, %d shards, "
          + "%s)%n", uri, c.manifest().rows(), c.manifest().shards().stream().mapToLong(sh -> sh.documents().size()).sum(),
          c.manifest().shards().size(), c.manifest().indexFactory());
      try (LongLlama m = LongLlama.load(ckpt, Device.cpu()); MemoryEndpoint endpoint = MemoryEndpoint.remote(uri)) {
        ServiceMemory memory = new ServiceMemory(endpoint, new ServiceMemory.Options(List.of("demo"), List.of(HAYSTACK),
            topK, 0, 0, 30_000, 3), m.config(), ckpt.fingerprint(), 1);
        out.printf(Locale.ROOT, "[4/4] ask: \"%s\" in a context of its own; memory: the top-%d pairs per head and "
            + "query of document %s, fetched from %s%n", Passkey.QUESTION, topK, HAYSTACK, uri);
        Haystack.Answer a = Haystack.ask(m, tok, memory, null);
        boolean right = a.key() == haystack.key();
        out.printf(Locale.ROOT, "      answer: '%s' -> %s (the hidden key is %d; %.1f s)%n", a.text(),
            right ? "RIGHT" : "WRONG", haystack.key(), a.seconds());
      }
    }
    return 0;
  }

  static final String HAYSTACK = "haystack.txt";
}
