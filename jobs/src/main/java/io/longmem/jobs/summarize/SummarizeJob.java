package io.longmem.jobs.summarize;

import io.longmem.io.InputException;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.ExecutorModel;
import io.longmem.jobs.encode.ShardEncoder;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.Memory;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import io.longmem.summarize.BookSummarizer;
import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.util.LongAccumulator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Summarizes every document of a corpus on Spark and writes (id, summary, tokens, generated,
 * seconds) as JSON Lines or Parquet. Documents not encoded are read into dense memory in the task;
 * documents already encoded are summarized against a memory service ({@code --memory grpc://...
 * --collection C}): only their ids are needed, and without {@code --input} every document of the
 * collection is summarized.
 */
@Command(name = "summarize-corpus", mixinStandardHelpOptions = true, sortOptions = false,
    description = "Summarize every document of a corpus (or of an encoded collection) with Spark.")
public final class SummarizeJob implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(SummarizeJob.class);

  @Option(names = "--input", paramLabel = "PATH", description = "documents (text directory, JSONL or Parquet, as for encode)")
  String input;
  @Option(names = "--format", defaultValue = "auto") String format;
  @Option(names = "--id-column", defaultValue = "id") String idColumn;
  @Option(names = "--text-column", defaultValue = "text") String textColumn;
  @Option(names = "--token-ids-column", defaultValue = "token_ids") String tokenIdsColumn;
  @Option(names = "--model", required = true, paramLabel = "DIR") Path model;
  @Option(names = "--tokenizer", paramLabel = "FILE") Path tokenizer;
  @Option(names = "--memory", defaultValue = "dense", paramLabel = "dense|grpc://HOST:PORT",
      description = "dense: each book is read in its task; grpc://HOST:PORT: books already encoded in --collection")
  String memory;
  @Option(names = "--collection", paramLabel = "C", description = "the collection that holds the books (with --memory grpc://)")
  String collection;
  @Option(names = "--memory-top-k", defaultValue = "128") int topK;
  @Option(names = "--instruction", paramLabel = "TEXT") String instruction = BookSummarizer.DEFAULT_INSTRUCTION;
  @Option(names = "--max-new-tokens", defaultValue = "256") int maxNewTokens;
  @Option(names = {"--output", "--out"}, required = true, paramLabel = "DIR") Path output;
  @Option(names = "--output-format", defaultValue = "jsonl", paramLabel = "jsonl|parquet") String outputFormat;
  @Option(names = "--partitions", paramLabel = "N", description = "tasks (default: Spark's default parallelism)") Integer partitions;
  @Option(names = "--master", paramLabel = "URL") String master;

  public static void main(String[] args) {
    System.exit(new CommandLine(new SummarizeJob()).execute(args));
  }

  @Override
  public Integer call() throws Exception {
    try (SparkSession spark = io.longmem.jobs.JobSessions.start(master, "longmem summarize")) {
      long n = run(spark, settings(), input == null ? null : new Corpus.Spec(input,
          Corpus.Format.valueOf(format.toUpperCase(Locale.ROOT)), idColumn, textColumn, tokenIdsColumn), output,
          outputFormat, partitions == null ? spark.sparkContext().defaultParallelism() : partitions);
      System.out.println("summarized " + n + " documents into " + output);
    }
    return 0;
  }

  Settings settings() {
    return new Settings(model.toAbsolutePath().toString(), tokenizer == null ? null : tokenizer.toAbsolutePath().toString(),
        memory, collection, topK, instruction, maxNewTokens);
  }

  /** What every task needs to summarize. */
  public record Settings(String model, String tokenizer, String memory, String collection, int topK, String instruction,
      int maxNewTokens) implements Serializable {}

  static final StructType OUTPUT = new StructType()
      .add("id", DataTypes.StringType, false)
      .add("summary", DataTypes.StringType, true)
      .add("tokens", DataTypes.LongType, false)
      .add("generated", DataTypes.LongType, false)
      .add("seconds", DataTypes.DoubleType, false);

  /** Runs the job; returns the number of documents summarized. */
  public static long run(SparkSession spark, Settings s, Corpus.Spec in, Path output, String outputFormat, int partitions)
      throws IOException {
    if (!Files.isDirectory(Path.of(s.model()))) {
      throw new InputException("--model " + s.model() + " is not a directory");
    }
    Checkpoint ckpt = Checkpoint.open(Path.of(s.model()));
    if (ExecutorModel.tokenizer(ckpt, s.tokenizer()) == null) {
      throw new InputException("summaries need a tokenizer: the checkpoint has no tokenizer.model; pass --tokenizer");
    }
    if (!outputFormat.equals("jsonl") && !outputFormat.equals("parquet")) {
      throw new InputException("--output-format must be jsonl or parquet, got " + outputFormat);
    }
    if (Files.exists(output)) {
      throw new InputException("output " + output + " already exists; choose a new directory");
    }
    boolean encoded = !"dense".equals(s.memory());
    if (encoded && s.collection() == null) {
      throw new InputException("--memory " + s.memory() + " needs --collection (the books already encoded)");
    }
    Dataset<Row> docs;
    if (in != null) {
      docs = Corpus.read(spark, Corpus.resolve(spark, in));
    } else if (encoded) {
      List<Row> ids = new ArrayList<>();
      try (MemoryEndpoint e = MemoryEndpoint.remote(s.memory())) {
        for (String d : e.documents(s.collection())) {
          ids.add(RowFactory.create(d, null, null, false, false, false));
        }
      }
      docs = spark.createDataFrame(ids, Corpus.SCHEMA);
    } else {
      throw new InputException("give --input, or --memory grpc://... --collection C to summarize a collection");
    }
    long rows = docs.count();
    LongAccumulator done = spark.sparkContext().longAccumulator("longmem documents summarized");
    LongAccumulator tokens = spark.sparkContext().longAccumulator("longmem book tokens read");
    String fingerprint = ckpt.fingerprint();
    JavaRDD<Row> out = docs.repartition(partitions).javaRDD().mapPartitions(it -> {
      ExecutorModel m = ExecutorModel.get(s.model(), null, s.tokenizer(), 1);
      BookSummarizer summarizer = new BookSummarizer(m.model(), m.tokenizer());
      GenerationOptions greedy = GenerationOptions.greedy(s.maxNewTokens(), m.config().eosTokenId(),
          m.config().lastContextLength());
      List<Row> result = new ArrayList<>();
      try (MemoryEndpoint endpoint = encoded ? MemoryEndpoint.remote(s.memory()) : null) {
        Iterator<ShardEncoder.Document> d = EncodeJob.documents(it);
        while (d.hasNext()) {
          ShardEncoder.Document doc = d.next();
          if (doc.id() == null || doc.malformed()) {
            continue;
          }
          long start = System.nanoTime();
          BookSummarizer.Result r;
          if (encoded) {
            Memory mem = new ServiceMemory(endpoint, new ServiceMemory.Options(List.of(s.collection()), List.of(doc.id()),
                s.topK(), 0, 0, 30_000, 3), m.config(), fingerprint, 1);
            r = summarizer.summarize(null, s.instruction(), mem, greedy, null);
          } else if (doc.tokenIds() != null) {
            long[] instr = java.util.Arrays.stream(m.tokenizer().encode(s.instruction())).asLongStream().toArray();
            long[] prompt = java.util.Arrays.copyOf(doc.tokenIds(), doc.tokenIds().length + instr.length);
            System.arraycopy(instr, 0, prompt, doc.tokenIds().length, instr.length);
            r = summarizer.summarizeIds(prompt, doc.tokenIds().length, new DenseMemory(m.model().manager()), greedy, null);
          } else if (doc.text() != null && !doc.text().isBlank()) {
            r = summarizer.summarize(doc.text(), s.instruction(), new DenseMemory(m.model().manager()), greedy, null);
          } else {
            continue;
          }
          double seconds = (System.nanoTime() - start) / 1e9;
          result.add(RowFactory.create(doc.id(), r.summary(), (long) r.bookTokens(), (long) r.ids().length, seconds));
          done.add(1);
          tokens.add(r.bookTokens());
          LOG.info(String.format(Locale.ROOT, "summarized '%s': %s", doc.id(), r.stats()));
        }
      }
      return result.iterator();
    });
    Dataset<Row> table = spark.createDataFrame(out, OUTPUT);
    spark.sparkContext().setJobDescription("longmem summarize -> " + output);
    try (EncodeJob.ProgressLog log = new EncodeJob.ProgressLog(rows, rows, done, tokens, done, 10)) {
      // Spark's file committer: tasks write under _temporary, the job commit moves them into place
      if (outputFormat.equals("jsonl")) {
        table.write().json(output.toAbsolutePath().toString());
      } else {
        table.write().parquet(output.toAbsolutePath().toString());
      }
    }
    long n = spark.read().schema(OUTPUT).format(outputFormat.equals("jsonl") ? "json" : "parquet")
        .load(output.toAbsolutePath().toString()).count();
    LOG.info("summarized {} of {} documents into {}", n, rows, output);
    return n;
  }
}
