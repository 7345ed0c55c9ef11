package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.monotonically_increasing_id;

import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;
import org.apache.spark.util.LongAccumulator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Encodes a corpus into a memory collection on Spark: every document read by LongLLaMA window by
 * window, its memory layers' (key, value) pairs written to shards (Arrow + FAISS) that the memory
 * service serves. {@code spark-submit --class io.longmem.jobs.encode.EncodeJob longmem-jobs.jar ...}
 * on a cluster, {@code bin/longmem encode ...} on an embedded local[*] Spark.
 *
 * <p>Plan: check model, tokenizer, input and output on the driver (fail fast); count the input for
 * progress; shuffle documents into {@code --shards} partitions by a hash of their id; each task
 * encodes its partition into one shard ({@link ShardEncoder}); the driver commits the manifest.
 */
@Command(name = "encode", mixinStandardHelpOptions = true, sortOptions = false,
    description = "Encode a corpus into a memory collection with Spark (local[*] unless spark-submit says otherwise).")
public final class EncodeJob implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(EncodeJob.class);

  @Option(names = "--input", required = true, paramLabel = "PATH",
      description = "directory of text files (one document each), JSON Lines file(s) or Parquet file(s)")
  String input;
  @Option(names = "--format", defaultValue = "auto", paramLabel = "auto|text|jsonl|parquet",
      description = "input format (default: from the file names)")
  String format;
  @Option(names = "--id-column", defaultValue = "id", description = "JSONL/Parquet: document id (default: ${DEFAULT-VALUE})")
  String idColumn;
  @Option(names = "--text-column", defaultValue = "text", description = "JSONL/Parquet: document text (default: ${DEFAULT-VALUE})")
  String textColumn;
  @Option(names = "--token-ids-column", defaultValue = "token_ids",
      description = "JSONL/Parquet: pre-tokenized documents, used before text (default: ${DEFAULT-VALUE})")
  String tokenIdsColumn;
  @Option(names = "--model", required = true, paramLabel = "DIR", description = "checkpoint directory (same path on every executor)")
  Path model;
  @Option(names = "--tokenizer", paramLabel = "FILE", description = "SentencePiece model (default: the checkpoint's tokenizer.model)")
  Path tokenizer;
  @Option(names = "--mem-dtype", paramLabel = "float32|bfloat16|float16", description = "default: the checkpoint's mem_dtype")
  String memDType;
  @Option(names = "--compute-dtype", defaultValue = "float32", paramLabel = "float32|bfloat16",
      description = "dtype of the large matmuls; bfloat16: oneDNN (AMX) on x86-64 CPUs (default: ${DEFAULT-VALUE})")
  String computeDType;
  @Option(names = {"--output", "--out"}, required = true, paramLabel = "DIR|URI",
      description = "collection to create: a local directory (on a cluster: one every executor sees at this path) "
          + "or a Hadoop filesystem URI (hdfs://, s3a://, ...)")
  String output;
  @Option(names = "--commit", defaultValue = "auto", paramLabel = "auto|rename|manifest",
      description = "how shards on a Hadoop filesystem are committed: by directory rename (hdfs, viewfs) or by the "
          + "manifest naming each shard's attempt (object stores, where a rename copies); auto picks by the scheme")
  String commit;
  @Option(names = "--index", defaultValue = "Flat", paramLabel = "FACTORY",
      description = "FAISS factory string per (shard, layer, head) index, e.g. Flat, IVF1024,PQ25, HNSW32 (default: ${DEFAULT-VALUE})")
  String index;
  @Option(names = "--training-rows", defaultValue = "65536", description = "keys per shard that train IVF/PQ indexes")
  int trainingRows;
  @Option(names = "--shards", paramLabel = "N", description = "shards (= tasks) to write (default: Spark's default parallelism)")
  Integer shards;
  @Option(names = "--batch-size", defaultValue = "4", description = "documents read side by side (default: ${DEFAULT-VALUE})")
  int batchSize;
  @Option(names = "--max-batch-tokens", defaultValue = "16384",
      description = "cap on documents x longest document's tokens per batch (default: ${DEFAULT-VALUE})")
  int maxBatchTokens;
  @Option(names = "--torch-threads", paramLabel = "N", description = "libtorch threads per executor JVM (default: spark.task.cpus)")
  Integer torchThreads;
  @Option(names = "--read-memory", defaultValue = "dense", paramLabel = "dense|knn[:K]",
      description = "what each window attends to while a document is read: dense (every pair before it, the "
          + "reference; quadratic in the document's length) or knn (its top-K pairs per head: linear). "
          + "Default: ${DEFAULT-VALUE}")
  String readMemory;

  @Option(names = "--read-k", defaultValue = "128", paramLabel = "K", description = "K of --read-memory knn (default: ${DEFAULT-VALUE})")
  int readK;

  @Option(names = "--resume", description = "finish an interrupted run of the same plan into the same --output")
  boolean resume;
  @Option(names = "--master", paramLabel = "URL",
      description = "Spark master when not started by spark-submit (default: local[*])")
  String master;
  @Option(names = "--progress-seconds", defaultValue = "10", description = "how often progress is logged")
  int progressSeconds;

  public static void main(String[] args) {
    int code = new CommandLine(new EncodeJob()).setExecutionExceptionHandler((e, cmd, parsed) -> {
      if (e instanceof InputException || e instanceof IOException) {
        cmd.getErr().println("longmem encode: " + e.getMessage());
        return 2;
      }
      throw e;
    }).execute(args);
    System.exit(code);
  }

  @Override
  public Integer call() throws Exception {
    try (SparkSession spark = io.longmem.jobs.JobSessions.start(master, "longmem encode")) {
      Report r = run(spark, spec(spark), output, commit, resume, progressSeconds);
      System.out.println(r.summary());
    }
    return 0;
  }

  EncodeSpec spec(SparkSession spark) {
    int n = shards != null ? shards : spark.sparkContext().defaultParallelism();
    int threads = torchThreads != null ? torchThreads : spark.sparkContext().getConf().getInt("spark.task.cpus", 1);
    Corpus.Format f;
    try {
      f = Corpus.Format.valueOf(format.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new InputException("--format must be auto, text, jsonl or parquet, got " + format);
    }
    return new EncodeSpec(model.toAbsolutePath().toString(), tokenizer == null ? null : tokenizer.toAbsolutePath().toString(),
        memDType, index, trainingRows, n, batchSize, maxBatchTokens, threads,
        new Corpus.Spec(input, f, idColumn, textColumn, tokenIdsColumn),
        io.longmem.model.memory.ReadMemory.parse(readMemory, readK).toString(), computeDType);
  }

  /** What a run did. */
  public record Report(String collection, int shards, int resumedShards, ShardEncoder.Counts counts, double seconds) {
    public double tokensPerSecond() {
      return counts.tokens() / Math.max(seconds, 1e-9);
    }

    public String summary() {
      ShardEncoder.Counts c = counts;
      return String.format(Locale.ROOT, "encoded %d documents, %d tokens into %s (%d shards%s) in %.1f s: %.0f tokens/s; "
          + "skipped: %d empty, %d duplicate ids, %d without id, %d with undecodable ids, %d malformed records, "
          + "%d rejected; %d with undecodable bytes (read as U+FFFD)", c.documents(), c.tokens(), collection, shards,
          resumedShards > 0 ? ", " + resumedShards + " finished by an earlier run" : "", seconds, tokensPerSecond(),
          c.empty(), c.duplicates(), c.missingId(), c.badId(), c.malformed(), c.rejected(), c.badUtf8());
    }
  }

  /** Runs the job on an existing session, into a local directory. */
  public static Report run(SparkSession spark, EncodeSpec spec, Path output, boolean resume, int progressSeconds)
      throws IOException {
    return run(spark, spec, output.toString(), "auto", resume, progressSeconds);
  }

  /**
   * Runs the job on an existing session.
   *
   * @param output a local directory, a {@code file:} URI or a Hadoop filesystem URI
   * @param commit auto, rename or manifest: how shards on a Hadoop filesystem are committed
   */
  public static Report run(SparkSession spark, EncodeSpec spec, String output, String commit, boolean resume,
      int progressSeconds) throws IOException {
    long start = System.nanoTime();
    HadoopOutput remote = null;
    Path out = null;
    if (io.longmem.memory.fs.Locations.isRemote(output)) {
      remote = HadoopOutput.of(output, commit, spark.sparkContext().hadoopConfiguration());
    } else {
      if (!"auto".equalsIgnoreCase(commit) && !"rename".equalsIgnoreCase(commit)) {
        throw new InputException("--commit " + commit + " is for Hadoop filesystem URIs; a local --output "
            + output + " commits by rename");
      }
      out = (io.longmem.memory.fs.Locations.isFileUri(output) ? Path.of(io.longmem.memory.fs.HadoopConf.uri(output,
          "--output")) : Path.of(output)).toAbsolutePath();
    }
    String shown = remote != null ? output : out.toString();
    if (remote != null && remote.exists(Manifest.FILE)) { // the filesystem reachable, before any work
      throw new InputException("output " + output + " already holds a committed collection; "
          + "choose another directory or delete it first");
    }
    // 1. Fail fast: model, tokenizer, input, output, before any work.
    Path modelDir = Path.of(spec.model());
    if (!Files.isDirectory(modelDir)) {
      throw new InputException("--model " + modelDir + " is not a directory");
    }
    Checkpoint ckpt = Checkpoint.open(modelDir);
    LongLlamaConfig config = ExecutorModel.config(ckpt, spec.memDType());
    if (config.memLayers().isEmpty()) {
      throw new InputException("--model " + modelDir + " has no memory layers (mem_layers): nothing to encode");
    }
    String fingerprint = ckpt.fingerprint();
    SentencePieceTokenizer tok = ExecutorModel.tokenizer(ckpt, spec.tokenizer());
    if (tok != null) {
      config.checkTokenizer(tok.vocabSize());
    }
    Corpus.Spec in = Corpus.resolve(spark, spec.input());
    long badNames = Corpus.undecodableNames(in);
    EncodeSpec resolved = new EncodeSpec(spec.model(), spec.tokenizer(), spec.memDType(), spec.indexFactory(),
        spec.trainingRows(), spec.shards(), spec.batchSize(), spec.maxBatchTokens(), spec.torchThreads(), in,
        spec.readMemory(), spec.computeDType());
    if (spec.compute() == ComputeDType.BFLOAT16) {
      io.longmem.model.compute.Bf16Matrix.isa(); // loads the native library or says what to install
    }
    ExecutorModel.configureDjl(spec.torchThreads()); // local mode: executors share this JVM
    Dataset<Row> docs = Corpus.read(spark, in);
    // 2. Count the input (a scan, no shuffle): totals for progress, and text without a tokenizer.
    Row totals = docs.agg(functions.count(functions.lit(1)),
        functions.sum(functions.when(col(Corpus.TOKEN_IDS).isNotNull(), functions.size(col(Corpus.TOKEN_IDS)))
            .otherwise(functions.coalesce(functions.length(col(Corpus.TEXT)), functions.lit(0)))),
        functions.sum(functions.when(col(Corpus.TOKEN_IDS).isNull().and(col(Corpus.TEXT).isNotNull()), 1).otherwise(0)))
        .first();
    long rows = totals.getLong(0);
    long units = totals.isNullAt(1) ? 0 : totals.getLong(1);
    long textRows = totals.isNullAt(2) ? 0 : totals.getLong(2);
    if (rows == 0) {
      throw new InputException("input " + in.path() + " holds no documents");
    }
    if (textRows > 0 && tok == null) {
      throw new InputException(textRows + " documents are text, and there is no tokenizer: the checkpoint "
          + "has no tokenizer.model; pass --tokenizer FILE");
    }
    String tokFingerprint = tok == null ? null : "sha256:" + io.longmem.io.FileTrees.sha256(
        ckpt.tokenizerModel(spec.tokenizer() == null ? null : Path.of(spec.tokenizer())));
    OutputDir dir = remote != null ? remote : OutputDir.local(out);
    // what an earlier run committed; a shard found committed later was an earlier attempt of this run
    // (its executor lost after the commit), which is not resuming
    java.util.Set<String> finishedBefore = EncodeOutput.prepare(dir,
        resolved.plan(fingerprint, config.memDType().pythonName(), tokFingerprint), resume);
    int earlier = finishedBefore.size();
    LOG.info("encode: {} documents ({} {}) from {} ({}) into {} shards at {}{}", rows, units,
        in.format() == Corpus.Format.TEXT ? "characters" : "characters/tokens", in.path(),
        in.format().name().toLowerCase(Locale.ROOT), spec.shards(), shown
            + (remote != null ? " (commit by " + remote.commit().name().toLowerCase(Locale.ROOT) + ")" : ""),
        earlier > 0 ? " (resuming: " + earlier + " shards finished earlier)" : "");

    // 3. Encode: documents to shards by id hash, id order within a shard; one task per shard.
    LongAccumulator docsDone = spark.sparkContext().longAccumulator("longmem documents encoded");
    LongAccumulator tokensDone = spark.sparkContext().longAccumulator("longmem tokens encoded");
    LongAccumulator unitsDone = spark.sparkContext().longAccumulator("longmem input read");
    ShardEncoder.Progress progress = (d, t, u) -> {
      docsDone.add(d);
      tokensDone.add(t);
      unitsDone.add(u);
    };
    String outString = remote != null ? null : out.toString();
    HadoopOutput target = remote;
    JavaRDD<ShardEncoder.Result> results = docs.withColumn("ord", monotonically_increasing_id())
        .repartition(spec.shards(), col(Corpus.ID))
        .sortWithinPartitions(col(Corpus.ID), col("ord"))
        .javaRDD()
        .mapPartitionsWithIndex((index, it) -> {
          TaskContext task = TaskContext.get();
          String attempt = task == null ? "local" : "attempt-" + task.taskAttemptId();
          ShardEncoder encoder = target != null ? new ShardEncoder(resolved, target, fingerprint)
              : new ShardEncoder(resolved, Path.of(outString), fingerprint);
          return List.of(encoder.encode(index, documents(it), attempt, progress)).iterator();
        }, true);
    spark.sparkContext().setJobDescription("longmem encode -> " + shown);
    List<ShardEncoder.Result> done;
    try (ProgressLog log = new ProgressLog(rows, units, docsDone, tokensDone, unitsDone, progressSeconds)) {
      done = new ArrayList<>(results.collect());
    }
    // 4. Commit: the manifest lists every shard; attempts that lost and staging are removed.
    done.sort(Comparator.comparing(ShardEncoder.Result::shard));
    ShardEncoder.Counts counts = new ShardEncoder.Counts(0, 0, 0, 0, 0, 0, 0, 0, badNames);
    List<Manifest.ShardEntry> entries = new ArrayList<>();
    int resumed = 0;
    for (ShardEncoder.Result r : done) {
      counts = counts.plus(r.counts());
      if (r.entry() != null) {
        entries.add(r.entry());
        if (r.resumed()) {
          if (finishedBefore.contains(r.shard())) {
            resumed++;
          }
          counts = counts.plus(new ShardEncoder.Counts(r.entry().documents().size(), r.entry().rows(), 0, 0, 0, 0, 0, 0, 0));
        }
      }
    }
    if (entries.isEmpty()) {
      throw new InputException("no document of " + in.path() + " had any tokens: nothing to commit");
    }
    if (remote != null) {
      remote.commitManifest(Manifest.json(fingerprint, ShardEncoder.layout(config), config.memDType().pythonName(),
          spec.indexFactory(), entries), entries);
    } else {
      try (CollectionWriter w = CollectionWriter.create(out, fingerprint, ShardEncoder.layout(config),
          config.memDType().pythonName(), spec.indexFactory())) {
        w.commit(entries);
      }
    }
    Report report = new Report(shown, entries.size(), resumed, counts, (System.nanoTime() - start) / 1e9);
    try {
      EncodeOutput.recordResult(dir, report);
    } catch (IOException | RuntimeException e) { // the collection is committed and whole: say so, do not fail
      LOG.warn("could not add the final counts to {}'s {}: {}", shown, EncodeOutput.PLAN, e.toString());
    }
    LOG.info("{}", report.summary());
    return report;
  }

  /** Rows of {@link Corpus#SCHEMA} as documents. */
  public static Iterator<ShardEncoder.Document> documents(Iterator<Row> rows) {
    return new Iterator<>() {
      @Override
      public boolean hasNext() {
        return rows.hasNext();
      }

      @Override
      public ShardEncoder.Document next() {
        Row r = rows.next();
        long[] ids = null;
        if (!r.isNullAt(2)) {
          List<Object> l = r.getList(2);
          ids = new long[l.size()];
          for (int i = 0; i < ids.length; i++) {
            Object v = l.get(i);
            ids[i] = v == null ? -1 : ((Number) v).longValue(); // null ids are rejected as out of vocabulary
          }
        }
        return new ShardEncoder.Document(r.isNullAt(0) ? null : r.getString(0), r.isNullAt(1) ? null : r.getString(1),
            ids, r.getBoolean(3), r.getBoolean(4), r.getBoolean(5));
      }
    };
  }

  /** Logs documents, tokens, tokens/s and an ETA while the job runs (the accumulators also show in Spark's UI). */
  public static final class ProgressLog implements AutoCloseable {
    private final Thread thread;

    public ProgressLog(long rows, long units, LongAccumulator docs, LongAccumulator tokens, LongAccumulator read, int seconds) {
      long start = System.nanoTime();
      thread = new Thread(() -> {
        try {
          while (true) {
            Thread.sleep(Math.max(1, seconds) * 1000L);
            double el = (System.nanoTime() - start) / 1e9;
            double frac = units > 0 ? Math.min(1.0, read.value() / (double) units) : 0;
            String eta = frac > 0 ? String.format(Locale.ROOT, "%.0f s", el * (1 - frac) / frac) : "unknown";
            LOG.info(String.format(Locale.ROOT, "encode progress: %d of %d documents, %d tokens, %.0f tokens/s, "
                + "%.1f%% of input read, ETA %s", docs.value(), rows, tokens.value(), tokens.value() / el, 100 * frac, eta));
          }
        } catch (InterruptedException e) {
          // finished
        }
      }, "longmem-encode-progress");
      thread.setDaemon(true);
      thread.start();
    }

    @Override
    public void close() {
      thread.interrupt();
    }
  }
}
