package io.longmem.bench;

import ai.djl.Device;
import io.longmem.encode.DocumentEncoder;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.EncodeSpec;
import io.longmem.jobs.encode.ExecutorModel;
import io.longmem.jobs.encode.ShardEncoder;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.compute.ComputeDType;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code bin/longmem bench encode}: the Spark job's tokens/s against the same encoding loop
 * ({@link ShardEncoder}, same shards, same threads, same model loaded once) in one plain process,
 * on the same pre-tokenized input; and what skipping the layers after the last memory layer saves.
 */
@Command(name = "encode", mixinStandardHelpOptions = true,
    description = "Spark encode job vs the same loop in a plain process (tokens/s ratio), and the saving from "
        + "not computing layers after the last memory layer.")
public final class EncodeBench implements java.util.concurrent.Callable<Integer> {
  @Option(names = "--dir", required = true, description = "work directory (model, corpus, collections)") Path dir;
  @Option(names = "--documents", defaultValue = "512") int documents;
  @Option(names = "--tokens-per-document", defaultValue = "2048") int tokensPerDocument;
  @Option(names = "--parallelism", defaultValue = "2", description = "local[N] and the plain process's threads") int parallelism;
  @Option(names = "--shards", defaultValue = "8") int shards;
  @Option(names = "--batch-size", defaultValue = "4") int batchSize;
  @Option(names = "--hidden", defaultValue = "128") int hidden;
  @Option(names = "--heads", defaultValue = "4") int heads;
  @Option(names = "--layers", defaultValue = "8") int layers;
  @Option(names = "--mem-layers", split = ",", defaultValue = "2,4,5",
      description = "memory layers (LongLLaMA-3B: 6,12,18 of 26, the same share skipped as the default 2,4,5 of 8)")
  int[] memLayers;
  @Option(names = "--window", defaultValue = "256") int window;
  @Option(names = "--layers-sample", defaultValue = "64", description = "documents timed for the skipped-layers saving")
  int layersSample;
  @Option(names = "--compute-dtype", defaultValue = "float32", paramLabel = "float32|bfloat16",
      description = "bfloat16: instead of the plain-loop comparison, the Spark job in float32 (the baseline) and "
          + "then in bfloat16 compute, same corpus, shards and threads, same run; then both dtypes' GEMM rates at the "
          + "job's shape")
  String computeDType;

  @Override
  public Integer call() throws Exception {
    Files.createDirectories(dir);
    Path model = dir.resolve("model");
    if (!Files.exists(model.resolve("config.json"))) {
      RandomCheckpoint.write(model, new RandomCheckpoint.Shape(32000, hidden, heads, hidden * 11 / 4, layers, window,
          window / 2, memLayers), 1);
    }
    Path corpus = dir.resolve("corpus.jsonl");
    List<ShardEncoder.Document> docs = writeCorpus(corpus);
    long tokens = (long) documents * tokensPerDocument;
    System.out.printf(Locale.ROOT, "corpus: %d documents x %d tokens = %d tokens; model: %d layers (memory %s), hidden %d, "
        + "window %d; %d shards, batch %d, parallelism %d%n", documents, tokensPerDocument, tokens, layers,
        java.util.Arrays.toString(memLayers), hidden, window, shards, batchSize, parallelism);
    EncodeSpec spec = new EncodeSpec(model.toAbsolutePath().toString(), null, null, "Flat", 65536, shards, batchSize,
        16384, 1, new Corpus.Spec(corpus.toString(), Corpus.Format.JSONL, "id", "text", "token_ids"));
    if (ComputeDType.parse(computeDType) == ComputeDType.BFLOAT16) {
      return computeDTypes(spec, docs);
    }
    ExecutorModel m = ExecutorModel.get(spec); // loaded once, outside every timing, as on a warm executor
    String fingerprint = m.checkpoint().fingerprint();
    // warm-up outside the timings (JIT, libtorch's first calls), so neither run pays for it
    DocumentEncoder warm = m.encoder();
    for (int i = 0; i < Math.min(8, docs.size()); i += batchSize) {
      List<long[]> batch = new ArrayList<>();
      for (int j = i; j < Math.min(i + batchSize, docs.size()); j++) {
        batch.add(docs.get(j).tokenIds());
      }
      warm.encodeBatch(batch);
    }

    double plain = plain(spec, docs, dir.resolve("plain"), fingerprint);
    System.out.printf(Locale.ROOT, "plain process: %.0f tokens/s%n", tokens / plain);
    double spark;
    try (SparkSession session = SparkSession.builder().master("local[" + parallelism + "]").appName("bench encode")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate()) {
      io.longmem.io.FileTrees.deleteRecursively(dir.resolve("spark"));
      EncodeJob.Report r = EncodeJob.run(session, spec, dir.resolve("spark"), false, 30);
      spark = r.seconds();
      if (r.counts().tokens() != tokens) {
        throw new IllegalStateException("the Spark job encoded " + r.counts().tokens() + " tokens, expected " + tokens);
      }
    }
    System.out.printf(Locale.ROOT, "Spark local[%d]: %.0f tokens/s (job from input to committed manifest)%n",
        parallelism, tokens / spark);
    System.out.printf(Locale.ROOT, "Spark / plain throughput: %.3f (overhead %.1f%%)%n", plain / spark,
        100 * (spark / plain - 1));

    // The saving from skipping layers after the last memory layer, on the same documents, one thread.
    Checkpoint ckpt = m.checkpoint();
    try (LongLlama full = LongLlama.load(ckpt, m.config(), Device.cpu())) {
      List<long[]> sample = new ArrayList<>();
      for (int i = 0; i < Math.min(layersSample, docs.size()); i++) {
        sample.add(docs.get(i).tokenIds());
      }
      double[] t = new double[2];
      for (int round = 0; round < 2; round++) { // round 0 warms up
        for (int v = 0; v < 2; v++) {
          DocumentEncoder enc = new DocumentEncoder(full, v == 1);
          long s = System.nanoTime();
          for (int i = 0; i < sample.size(); i += batchSize) {
            enc.encodeBatch(sample.subList(i, Math.min(sample.size(), i + batchSize)));
          }
          t[v] = (System.nanoTime() - s) / 1e9;
        }
      }
      int last = java.util.Arrays.stream(memLayers).max().orElseThrow();
      System.out.printf(Locale.ROOT, "layers after the last memory layer (%d of %d) skipped: %.3f s vs %.3f s computing "
          + "all layers = %.2fx faster (%.1f%% saved)%n", layers - 1 - last, layers, t[0], t[1], t[1] / t[0],
          100 * (1 - t[0] / t[1]));
    }
    return 0;
  }

  /**
   * The Spark job on local[parallelism], the whole corpus, in float32 (the baseline) and then in
   * bfloat16 compute, same shards, batches and threads; each model loaded and warmed up before its run;
   * then one GEMM of the job's shape in each dtype, whose ratio is the most the matmuls alone would give.
   */
  private int computeDTypes(EncodeSpec base, List<ShardEncoder.Document> docs) throws Exception {
    long tokens = docs.stream().mapToLong(d -> d.tokenIds().length).sum();
    double[] seconds = new double[2];
    ComputeDType[] dtypes = {ComputeDType.FLOAT32, ComputeDType.BFLOAT16};
    for (int v = 0; v < 2; v++) {
      EncodeSpec spec = new EncodeSpec(base.model(), base.tokenizer(), base.memDType(), base.indexFactory(),
          base.trainingRows(), base.shards(), base.batchSize(), base.maxBatchTokens(), base.torchThreads(),
          base.input(), base.readMemory(), dtypes[v].label());
      ExecutorModel m = ExecutorModel.get(spec); // loaded once, outside the timing, as on a warm executor
      List<long[]> warm = new ArrayList<>();
      for (int j = 0; j < Math.min(batchSize, docs.size()); j++) {
        warm.add(docs.get(j).tokenIds());
      }
      m.encoder().encodeBatch(warm);
      Path out = dir.resolve("spark-" + dtypes[v].label());
      io.longmem.io.FileTrees.deleteRecursively(out);
      try (SparkSession session = SparkSession.builder().master("local[" + parallelism + "]").appName("bench encode")
          .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate()) {
        EncodeJob.Report r = EncodeJob.run(session, spec, out, false, 30);
        if (r.counts().tokens() != tokens) {
          throw new IllegalStateException("the Spark job encoded " + r.counts().tokens() + " tokens, expected " + tokens);
        }
        seconds[v] = r.seconds();
      }
      System.out.printf(Locale.ROOT, "Spark local[%d], %s compute: %d documents, %d tokens in %.2f s = %.0f tokens/s "
          + "(job from input to committed manifest)%n", parallelism, dtypes[v].label(), docs.size(), tokens, seconds[v],
          tokens / seconds[v]);
    }
    System.out.printf(Locale.ROOT, "bfloat16 / float32 encode tokens/s in this run: %.2fx%n", seconds[0] / seconds[1]);
    // what the hardware gives the ratio: one GEMM of the job's shape in each dtype, on a task's threads
    LongLlamaConfig c = LongLlamaConfig.load(dir.resolve("model"));
    int rows = Math.min(window, tokensPerDocument) * batchSize;
    double f32 = ComputeBounds.gemmRate(c, rows, ComputeDType.FLOAT32);
    double bf16 = ComputeBounds.gemmRate(c, rows, ComputeDType.BFLOAT16);
    System.out.printf(Locale.ROOT, "GEMM rates at the job's shape ([%d x %d] x [%d x %d], %s thread(s) as a task "
        + "runs): float32 %.0f GFLOP/s, bfloat16 %.0f GFLOP/s = %.2fx (the ratio were encoding its matmuls alone)%n",
        rows, c.hiddenSize(), c.hiddenSize(), 2 * c.intermediateSize(),
        System.getProperty("ai.djl.pytorch.num_threads", "all"), f32 / 1e9, bf16 / 1e9, bf16 / f32);
    return 0;
  }

  /** The same loop in plain Java: documents to shards by id hash, one thread per shard at a time. */
  private double plain(EncodeSpec spec, List<ShardEncoder.Document> docs, Path out, String fingerprint)
      throws Exception {
    io.longmem.io.FileTrees.deleteRecursively(out);
    Files.createDirectories(out);
    long start = System.nanoTime();
    List<List<ShardEncoder.Document>> parts = new ArrayList<>();
    for (int i = 0; i < shards; i++) {
      parts.add(new ArrayList<>());
    }
    for (ShardEncoder.Document d : docs) {
      parts.get(Math.floorMod(d.id().hashCode(), shards)).add(d);
    }
    AtomicLong done = new AtomicLong();
    ShardEncoder.Progress progress = (d, t, u) -> done.addAndGet(t);
    ShardEncoder encoder = new ShardEncoder(spec, out, fingerprint);
    ExecutorService pool = Executors.newFixedThreadPool(parallelism);
    List<Future<ShardEncoder.Result>> futures = new ArrayList<>();
    for (int i = 0; i < shards; i++) {
      int index = i;
      List<ShardEncoder.Document> part = parts.get(i);
      part.sort(Comparator.comparing(ShardEncoder.Document::id));
      futures.add(pool.submit(() -> encoder.encode(index, part.iterator(), "plain", progress)));
    }
    List<Manifest.ShardEntry> entries = new ArrayList<>();
    for (Future<ShardEncoder.Result> f : futures) {
      if (f.get().entry() != null) {
        entries.add(f.get().entry());
      }
    }
    pool.shutdown();
    ExecutorModel m = ExecutorModel.get(spec);
    try (CollectionWriter w = CollectionWriter.create(out, fingerprint, ShardEncoder.layout(m.config()),
        m.config().memDType().pythonName(), spec.indexFactory())) {
      w.commit(entries);
    }
    return (System.nanoTime() - start) / 1e9;
  }

  /** Random ids, Zipf-like over the vocabulary, as JSON Lines; returns the documents. */
  private List<ShardEncoder.Document> writeCorpus(Path file) throws IOException {
    SplittableRandom r = new SplittableRandom(3);
    List<ShardEncoder.Document> docs = new ArrayList<>();
    try (BufferedWriter w = Files.newBufferedWriter(file)) {
      for (int d = 0; d < documents; d++) {
        long[] ids = new long[tokensPerDocument];
        ids[0] = 1;
        StringBuilder s = new StringBuilder("{\"id\":\"doc-").append(d).append("\",\"token_ids\":[1");
        for (int t = 1; t < ids.length; t++) {
          ids[t] = 3 + (long) Math.min(31996, Math.exp(r.nextDouble() * Math.log(32000)));
          s.append(',').append(ids[t]);
        }
        w.write(s.append("]}\n").toString());
        docs.add(new ShardEncoder.Document("doc-" + d, null, ids, false, false));
      }
    }
    return docs;
  }
}
