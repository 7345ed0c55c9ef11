package io.longmem.cli;

import io.longmem.io.InputException;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.compute.ComputeDType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks.",
    subcommands = {BenchCommand.Model.class, BenchCommand.Memory.class, BenchCommand.Faiss.class,
        BenchCommand.Decode.class, BenchCommand.Fidelity.class, BenchCommand.PasskeyAccuracy.class})
final class BenchCommand implements Runnable {
  @Override
  public void run() {
    new picocli.CommandLine(this).usage(System.out);
  }

  @Command(name = "faiss", mixinStandardHelpOptions = true,
      description = "Search throughput of FAISS index types with the loaded FAISS build; run with "
          + "LONGMEM_JAVA_OPTS=-Dlongmem.faiss.variant=generic (or avx2) to compare the builds.")
  static final class Faiss implements Callable<Integer> {
    @Option(names = "--vectors", defaultValue = "200000") int vectors;
    @Option(names = "--dim", defaultValue = "100") int dim;
    @Option(names = "--queries", defaultValue = "256") int queries;
    @Option(names = "--k", defaultValue = "128") int k;
    @Option(names = "--index", split = ";", defaultValue = "Flat;IVF1024,Flat;IVF1024,PQ25;HNSW32")
    String[] factories;

    @Override
    public Integer call() {
      io.longmem.bench.FaissBench.run(vectors, dim, queries, k, factories);
      return 0;
    }
  }

  @Command(name = "memory", mixinStandardHelpOptions = true,
      description = "Memory-service throughput, latency and recall on a collection of clustered keys shaped like "
          + "LongLLaMA-3B's memory (32 heads, head_dim 100), against the same FAISS searches in process.")
  static final class Memory implements Callable<Integer> {
    @Option(names = "--tokens", defaultValue = "1048576", description = "tokens per head") long tokens;
    @Option(names = "--heads", defaultValue = "32") int heads;
    @Option(names = "--head-dim", defaultValue = "100") int headDim;
    @Option(names = "--clusters", defaultValue = "256") int clusters;
    @Option(names = "--shard-tokens", defaultValue = "262144") int shardTokens;
    @Option(names = "--index", defaultValue = "IVF1024,PQ25", description = "FAISS factory string") String factory;
    @Option(names = "--float32", description = "store float32 (default float16)") boolean float32;
    @Option(names = "--nprobe", defaultValue = "16") int nprobe;
    @Option(names = "--refine", defaultValue = "16", description = "candidates re-scored exactly per wanted pair (1: off)")
    int refine;
    @Option(names = "--k", defaultValue = "128") int k;
    @Option(names = "--decode-requests", defaultValue = "100") int decodeRequests;
    @Option(names = "--prefill-queries", defaultValue = "512") int prefillQueries;
    @Option(names = "--prefill-k", defaultValue = "128") int prefillK;
    @Option(names = "--prefill-requests", defaultValue = "5") int prefillRequests;
    @Option(names = "--recall-heads", defaultValue = "2") int recallHeads;
    @Option(names = "--clients", split = ",", defaultValue = "1,4",
        description = "decode steps asked by this many callers at once, one run per value (1: one at a time)")
    int[] clients;
    @Option(names = "--preload-limit-mb", defaultValue = "0",
        description = "the service's preload_limit_mb (0: its default, half the RAM)")
    long preloadLimitMb;
    @Option(names = "--dir", required = true, paramLabel = "DIR",
        description = "where the bench collection is written (reused if complete)")
    Path dir;

    @Override
    public Integer call() throws Exception {
      io.longmem.bench.MemoryBench.run(new io.longmem.bench.MemoryBench.Options(tokens, heads, headDim,
          clusters, shardTokens, factory, !float32, nprobe, refine, k, decodeRequests, prefillQueries, prefillK,
          prefillRequests, recallHeads, clients, preloadLimitMb, dir));
      return 0;
    }
  }

  @Command(name = "fidelity", mixinStandardHelpOptions = true,
      description = "kNN memory against dense memory: recall@k of an approximate index and the KL divergence of the "
          + "next-token distribution, for several k.")
  static final class Fidelity implements Callable<Integer> {
    @Option(names = "--dir", required = true, description = "collections (and the random model) go here") Path dir;
    @Option(names = "--model", description = "checkpoint (default: a random one with LongLLaMA's structure)") Path model;
    @Option(names = "--document-tokens", defaultValue = "16384") int documentTokens;
    @Option(names = "--question-tokens", defaultValue = "32") int questionTokens;
    @Option(names = "--k", split = ",", defaultValue = "32,128,512") int[] ks;
    @Option(names = "--index", defaultValue = "IVF128,PQ16") String index;
    @Option(names = "--nprobe", defaultValue = "32") int nprobe;

    @Override
    public Integer call() throws Exception {
      io.longmem.bench.FidelityBench.run(new io.longmem.bench.FidelityBench.Options(dir, model, documentTokens,
          questionTokens, ks, index, nprobe));
      return 0;
    }
  }

  @Command(name = "passkey", mixinStandardHelpOptions = true,
      description = "Passkey accuracy with memory from Spark-encoded, served collections (exact and approximate, "
          + "top-k over gRPC), beside dense memory in process and the model cut off from memory.")
  static final class PasskeyAccuracy implements Callable<Integer> {
    @Option(names = "--model", description = "checkpoint (default: the shipped model, conf/models/passkey-small)")
    Path model;
    @Option(names = "--dir", required = true, description = "corpora and collections go here") Path dir;
    @Option(names = "--sizes", split = ",", defaultValue = "4096,65536,1048576,16777216", description = "haystack tokens")
    long[] sizes;
    @Option(names = "--trials", split = ",", defaultValue = "20,20,20,5", description = "trials, one or one per size")
    int[] trials;
    @Option(names = "--memory-top-k", defaultValue = "" + SHIPPED_MODEL_TOP_K,
        description = "pairs per head and query (default: the shipped model's, ${DEFAULT-VALUE})") int topK;
    @Option(names = "--index", defaultValue = "auto",
        description = "approximate collection's FAISS factory (auto: IVF with ~64 keys per list, PQ16)") String index;
    @Option(names = "--nprobe", defaultValue = "32") int nprobe;
    @Option(names = "--refine", defaultValue = "16") int refine;
    @Option(names = "--dense-max-tokens", defaultValue = "65536", description = "largest haystack read densely in process")
    long denseMax;
    @Option(names = "--full-budget", defaultValue = "2000000",
        description = "most haystack tokens per size encoded as one document per trial (above: a shared filler document)")
    long fullBudget;
    @Option(names = "--parallelism", defaultValue = "2", description = "Spark local[N] and shards") int parallelism;
    @Option(names = "--seed", defaultValue = "1") long seed;

    @Override
    public Integer call() throws Exception {
      Path m = model != null ? model : Path.of(System.getProperty("longmem.home", ".")).resolve(SHIPPED_MODEL);
      io.longmem.bench.PasskeyBench.run(new io.longmem.bench.PasskeyBench.Options(dir, m, sizes, trials, topK, index,
          nprobe, refine, denseMax, fullBudget, parallelism, seed));
      return 0;
    }
  }

  /** The model trained here and shipped in the repository (conf/models/passkey-small/TRAINING.md). */
  static final String SHIPPED_MODEL = "conf/models/passkey-small";

  /**
   * Memory pairs per head and query for the shipped model: measured at 1M tokens (20 keys, exact
   * collection), k 16 and 32 found all, 64 missed one and 256 four (README, the shipped model).
   */
  static final int SHIPPED_MODEL_TOP_K = 32;

  @Command(name = "decode", mixinStandardHelpOptions = true,
      description = "Per-token decode latency with the memory layer's pairs fetched by kNN from served collections of "
          + "growing size, against dense in-process memory of the same size while it fits.")
  static final class Decode implements Callable<Integer> {
    @Option(names = "--dir", required = true, description = "model and collections (reused when complete)") Path dir;
    @Option(names = "--sizes", split = ",", defaultValue = "65536,1048576,16777216", description = "tokens per head")
    long[] sizes;
    @Option(names = "--heads", defaultValue = "4") int heads;
    @Option(names = "--head-dim", defaultValue = "32") int headDim;
    @Option(names = "--memory-top-k", defaultValue = "128") int topK;
    @Option(names = "--nprobe", defaultValue = "16") int nprobe;
    @Option(names = "--refine", defaultValue = "16", description = "re-scored candidates per wanted pair (1: off)")
    int refine;
    @Option(names = "--decode-tokens", defaultValue = "32") int decodeTokens;
    @Option(names = "--dense-max-tokens", defaultValue = "1048576", description = "largest dense memory tried")
    long denseMax;

    @Override
    public Integer call() throws Exception {
      io.longmem.bench.DecodeBench.run(new io.longmem.bench.DecodeBench.Options(dir, sizes, heads, headDim, topK, nprobe,
          refine, decodeTokens, denseMax));
      return 0;
    }
  }

  @Command(name = "model", mixinStandardHelpOptions = true,
      description = "Prefill tokens/s and decode ms/token of a random checkpoint shaped like LongLLaMA-3B "
          + "(hidden 3200, 32 heads, intermediate 8640, vocab 32000) with few layers, memory in layers 1 and 2.")
  static final class Model implements Callable<Integer> {
    @Option(names = "--layers", defaultValue = "4") int layers;
    @Option(names = "--hidden", defaultValue = "3200") int hidden;
    @Option(names = "--heads", defaultValue = "32") int heads;
    @Option(names = "--intermediate", defaultValue = "8640") int intermediate;
    @Option(names = "--vocab", defaultValue = "32000") int vocab;
    @Option(names = "--window", defaultValue = "2048", description = "max_position_embeddings") int window;
    @Option(names = "--last-context-length", defaultValue = "1024") int lastContextLength;
    @Option(names = "--tokens", defaultValue = "8192", description = "prompt length for prefill") int tokens;
    @Option(names = "--decode-tokens", defaultValue = "32") int decodeTokens;
    @Option(names = "--checkpoint-dir", description = "where the random checkpoint is kept (reused if present)")
    Path checkpointDir;
    @Option(names = "--device", defaultValue = "cpu") String device;
    @Option(names = "--compute-dtype", defaultValue = "float32", paramLabel = "float32|bfloat16",
        description = "bfloat16: float32 first as the baseline, then bfloat16, the GEMM bound and the decode floor")
    String computeDType;
    @Option(names = "--float32-baseline", negatable = true, defaultValue = "true", fallbackValue = "true",
        description = "with --compute-dtype bfloat16, run float32 first in the same process (default: on)")
    boolean float32Baseline;

    @Override
    public Integer call() throws Exception {
      if (tokens < 1 || decodeTokens < 1) {
        throw new InputException("--tokens and --decode-tokens must be >= 1");
      }
      Path dir = checkpointDir != null ? checkpointDir : Files.createTempDirectory("longmem-bench-");
      try {
        return run(dir);
      } finally {
        if (checkpointDir == null) {
          io.longmem.io.FileTrees.deleteRecursively(dir); // 1.4 GB at the default shape
        }
      }
    }

    private int run(Path dir) throws Exception {
      RandomCheckpoint.Shape shape = new RandomCheckpoint.Shape(vocab, hidden, heads, intermediate, layers,
          window, lastContextLength, new int[] {Math.min(1, layers - 1), Math.min(2, layers - 1)});
      if (!Files.exists(dir.resolve("model.safetensors"))) {
        long t = System.nanoTime();
        RandomCheckpoint.write(dir, shape, 1234);
        System.err.printf("wrote random checkpoint to %s in %.1f s%n", dir, (System.nanoTime() - t) / 1e9);
      }
      Device dev = "gpu".equals(device) ? Device.gpu() : Device.cpu();
      ComputeDType compute = ComputeDType.parse(computeDType);
      System.out.printf("bench model: layers=%d hidden=%d heads=%d intermediate=%d vocab=%d window=%d "
          + "last_context_length=%d tokens=%d device=%s threads=%d%n", layers, hidden, heads, intermediate, vocab,
          window, lastContextLength, tokens, dev, Runtime.getRuntime().availableProcessors());
      double[] f32 = compute == ComputeDType.FLOAT32 || float32Baseline
          ? measure(dir, dev, ComputeDType.FLOAT32, compute == ComputeDType.FLOAT32) : null;
      if (compute == ComputeDType.BFLOAT16) {
        System.gc(); // the float32 weights widened from BF16 live in direct buffers until collected
        double[] bf16 = measure(dir, dev, ComputeDType.BFLOAT16, false);
        LongLlamaConfig c = Checkpoint.open(dir).config();
        long windows = (tokens + window - 1) / window;
        double gemmRate = io.longmem.bench.ComputeBounds.gemmRate(c, Math.min(window, tokens), ComputeDType.BFLOAT16);
        double projections = io.longmem.bench.ComputeBounds.projectionFlops(c, tokens, windows);
        double attention = io.longmem.bench.ComputeBounds.attentionFlops(c, tokens);
        double gemmBound = (projections + attention) / gemmRate;
        double bandwidth = io.longmem.bench.ComputeBounds.copyBandwidth();
        double floor = bf16[4] / bandwidth;
        if (f32 != null) {
          System.out.printf("bfloat16/float32 in this run: prefill %.2fx, decode %.2fx (median ms/token %.1f vs %.1f)%n",
              f32[0] / bf16[0], f32[1] / bf16[1], bf16[1] * 1000, f32[1] * 1000);
          double f32Rate = io.longmem.bench.ComputeBounds.gemmRate(c, Math.min(window, tokens), ComputeDType.FLOAT32);
          System.out.printf("GEMM rates at this shape: float32 %.0f GFLOP/s, bfloat16 %.0f GFLOP/s = %.2fx (what the "
              + "matmuls alone give bfloat16 over float32 here); float32 prefill took %.2fx the float32 GEMM bound%n",
              f32Rate / 1e9, gemmRate / 1e9, gemmRate / f32Rate, f32[0] / ((projections + attention) / f32Rate));
        }
        System.out.printf("GEMM bound: matmuls %.3g FLOP (projections %.3g, attention %.3g) / measured bf16 GEMM "
            + "%.0f GFLOP/s = %.2f s (%.0f tokens/s); prefill took %.2fx that%n", projections + attention, projections,
            attention, gemmRate / 1e9, gemmBound, tokens / gemmBound, bf16[0] / gemmBound);
        System.out.printf("decode floor: bf16 weights %.0f MB / measured copy %.1f GB/s = %.1f ms/token; "
            + "decode median took %.2fx that%n", bf16[4] / 1e6, bandwidth / 1e9, floor * 1000, bf16[1] / floor);
      }
      return 0;
    }

    /** Loads the model in one compute dtype and prints its numbers: prefill s, median and mean decode s, memory, weight bytes. */
    private double[] measure(Path dir, Device dev, ComputeDType compute, boolean allLogitsBaseline) throws Exception {
      long t0 = System.nanoTime();
      try (LongLlama model = LongLlama.load(Checkpoint.open(dir), Checkpoint.open(dir).config(), dev, compute);
           NDManager out = NDManager.newBaseManager()) {
        double loadSeconds = (System.nanoTime() - t0) / 1e9;
        SplittableRandom r = new SplittableRandom(7);
        long[] prompt = new long[tokens];
        for (int i = 0; i < tokens; i++) {
          prompt[i] = 3 + r.nextInt(vocab - 3);
        }
        // warm-up: one short prompt and a few steps (allocator, kernels)
        run(model, Arrays.copyOf(prompt, Math.min(tokens, 64)), 2, out);
        if (compute == ComputeDType.BFLOAT16) {
          io.longmem.model.compute.Bf16Matrix.takeStats(); // not the warm-up's
        }
        double[] result = run(model, prompt, decodeTokens, out);
        String tag = compute.label();
        if (compute == ComputeDType.BFLOAT16) {
          double[] st = io.longmem.model.compute.Bf16Matrix.takeStats();
          System.out.printf("bfloat16 matmuls (prefill and decode): %.0f calls, %.2f s in all: %.2f s multiplying, "
              + "%.2f s rounding activations, %.2f s handing DJL tensors over (views, outputs)%n", st[0], st[1], st[3],
              st[2], st[1] - st[2] - st[3]);
        }
        System.out.printf("%s load: %.2f s%n", tag, loadSeconds);
        System.out.printf("%s prefill: %d tokens in %.2f s = %.1f tokens/s%n", tag, tokens, result[0], tokens / result[0]);
        if (allLogitsBaseline) {
          // baseline in the same run: the prompt read as the reference's forward reads it, with the
          // logits of every token computed (generation needs only the last)
          double allLogits = prefillAllLogits(model, prompt, out);
          System.out.printf("baseline prefill computing every token's logits (as the reference's forward): "
              + "%.2f s = %.1f tokens/s; longmem/baseline = %.2fx%n", allLogits, tokens / allLogits, allLogits / result[0]);
        }
        System.out.printf("%s decode: %d tokens, median %.1f ms/token, mean %.1f ms/token (memory %d tokens/layer)%n",
            tag, decodeTokens, result[1] * 1000, result[2] * 1000, (long) result[3]);
        return new double[] {result[0], result[1], result[2], result[3], model.projectionBytes()};
      }
    }

    private static double prefillAllLogits(LongLlama model, long[] prompt, NDManager out) {
      try (LongLlamaCache cache = model.newCache(1)) {
        long t = System.nanoTime();
        try (NDArray logits = model.forward(cache, new long[][] {prompt}, null, true,
            model.config().lastContextLength(), LongLlama.Output.ALL_LOGITS, out)) {
          logits.argMax().getLong();
        }
        return (System.nanoTime() - t) / 1e9;
      }
    }

    /** Returns prefill seconds, median and mean decode seconds per token, memory size. */
    private static double[] run(LongLlama model, long[] prompt, int steps, NDManager out) {
      try (LongLlamaCache cache = model.newCache(1)) {
        long t = System.nanoTime();
        long next;
        try (NDArray logits = model.forward(cache, new long[][] {prompt}, null, true,
            model.config().lastContextLength(), LongLlama.Output.LAST_LOGITS, out)) {
          next = logits.argMax().getLong();
        }
        double prefill = (System.nanoTime() - t) / 1e9;
        double[] step = new double[steps];
        for (int i = 0; i < steps; i++) {
          long s = System.nanoTime();
          try (NDArray logits = model.forward(cache, new long[][] {{next}}, null, true, 0,
              LongLlama.Output.LAST_LOGITS, out)) {
            next = logits.argMax().getLong();
          }
          step[i] = (System.nanoTime() - s) / 1e9;
        }
        double mean = Arrays.stream(step).average().orElse(0);
        Arrays.sort(step);
        return new double[] {prefill, step[steps / 2], mean, cache.memory().size(model.config().memLayers().get(0))};
      }
    }
  }
}
