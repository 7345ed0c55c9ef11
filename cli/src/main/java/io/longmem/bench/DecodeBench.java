package io.longmem.bench;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.longmem.bench.MemoryBench;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.memory.shard.Manifest;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.ForwardingMemory;
import io.longmem.model.memory.Memory;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * {@code bin/longmem bench decode}: per-token decode latency of a model whose memory layer fetches
 * its top-k pairs from a served collection (synthetic clustered keys, IVF-PQ, memory-mapped on
 * disk) of growing size, against dense in-process memory of the same size while it fits in RAM.
 */
public final class DecodeBench {
  private DecodeBench() {}

  /** What to measure. */
  public record Options(Path dir, long[] sizes, int heads, int headDim, int topK, int nprobe, int refine,
      int decodeTokens, long denseMaxTokens) {}

  public static void run(Options o) throws Exception {
    Files.createDirectories(o.dir());
    Path modelDir = o.dir().resolve("model");
    int hidden = o.heads() * o.headDim();
    if (!Files.exists(modelDir.resolve("config.json"))) {
      RandomCheckpoint.write(modelDir, new RandomCheckpoint.Shape(32000, hidden, o.heads(), hidden * 11 / 4, 2, 256, 128,
          new int[] {1}), 5);
    }
    Checkpoint ckpt = Checkpoint.open(modelDir);
    String fingerprint = ckpt.fingerprint();
    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    for (long n : o.sizes()) {
      Path coll = o.dir().resolve("memory-" + n);
      int nlist = (int) Math.max(64, Math.min(16384, Math.round(Math.sqrt(n))));
      String factory = "IVF" + nlist + ",PQ" + (o.headDim() / 2);
      if (!Files.exists(coll.resolve(Manifest.FILE))) {
        System.out.printf("building a %d-token collection (%s) in %s ...%n", n, factory, coll);
        SyntheticCollection.write(new MemoryBench.Options(n, o.heads(), o.headDim(), 256, 1 << 20, factory, true,
            o.nprobe(), 0, o.topK(), 0, 0, 0, 0, 0, new int[] {1}, 0, coll), 1, fingerprint, Math.max(65_536, 40 * nlist));
      }
      conf.collections.put("m" + n, coll.toString());
    }
    System.out.printf(Locale.ROOT, "bench decode: model hidden %d, %d heads x %d, memory layer 1 of 2; top-%d, nprobe %d, "
        + "refine %d, %d decoded tokens per size, %d cores%n", hidden, o.heads(), o.headDim(), o.topK(), o.nprobe(),
        o.refine(),
        o.decodeTokens(), Runtime.getRuntime().availableProcessors());
    List<double[]> knn = new ArrayList<>();
    try (MemoryServer server = MemoryServer.start(conf);
         LongLlama model = LongLlama.load(ckpt, Device.cpu());
         MemoryEndpoint endpoint = MemoryEndpoint.remote("grpc://127.0.0.1:" + server.port())) {
      long[] prompt = new SplittableRandom(9).longs(64, 3, 32000).toArray();
      for (int round = 0; round < 2; round++) { // round 0 warms up (JIT, first searches, page cache)
        knn.clear();
        for (long n : o.sizes()) {
          var opts = new ServiceMemory.Options(List.of("m" + n), List.of(), o.topK(), o.nprobe(), o.refine(), 60_000, 1);
          Timed memory = new Timed(new ServiceMemory(endpoint, opts, model.config(), fingerprint, 1));
          knn.add(decode(model, memory, prompt, o.decodeTokens()));
        }
      }
      for (int i = 0; i < o.sizes().length; i++) {
        long n = o.sizes()[i];
        double[] k = knn.get(i);
        String dense = "does not fit (" + (n * hidden * 8 >> 20) + " MiB)";
        if (n <= o.denseMaxTokens()) {
          double[] d = null;
          for (int round = 0; round < 2; round++) {
            d = decode(model, new Timed(denseMemory(model, n)), prompt, o.decodeTokens());
          }
          dense = String.format(Locale.ROOT, "%.1f ms/token -> kNN/dense %.2fx", d[0], k[0] / d[0]);
        }
        System.out.printf(Locale.ROOT, "memory %,d tokens/head: kNN decode p50 %.1f ms/token (memory search p50 %.1f ms, "
            + "p99 %.1f ms); dense: %s%n", n, k[0], k[1], k[2], dense);
      }
      double first = knn.get(0)[0];
      double last = knn.get(knn.size() - 1)[0];
      System.out.printf(Locale.ROOT, "kNN decode latency at %,d vs %,d tokens/head: %.2fx (target <= 2x)%n",
          o.sizes()[o.sizes().length - 1], o.sizes()[0], last / first);
    }
  }

  /** Decodes after a prompt; returns p50 ms/token, p50 and p99 ms of the memory searches during decoding. */
  private static double[] decode(LongLlama model, Timed memory, long[] prompt, int steps) {
    try (LongLlamaCache cache = model.newCache(1, memory); NDManager out = NDManager.newBaseManager()) {
      long next;
      try (NDArray logits = model.forward(cache, new long[][] {prompt}, null, true, prompt.length,
          LongLlama.Output.LAST_LOGITS, out)) {
        next = logits.argMax().getLong();
      }
      memory.searches.clear();
      double[] step = new double[steps];
      for (int i = 0; i < steps; i++) {
        long s = System.nanoTime();
        try (NDArray logits = model.forward(cache, new long[][] {{next}}, null, true, 0, LongLlama.Output.LAST_LOGITS,
            out)) {
          next = logits.argMax().getLong();
        }
        step[i] = (System.nanoTime() - s) / 1e6;
      }
      double[] search = memory.searches.stream().mapToDouble(Double::doubleValue).sorted().toArray();
      Arrays.sort(step);
      return new double[] {step[steps / 2], search[search.length / 2],
          search[Math.min(search.length - 1, (int) Math.ceil(0.99 * search.length) - 1)]};
    }
  }

  /** Dense memory holding n random pairs in the memory layer, as the reference would after reading n tokens. */
  private static Memory denseMemory(LongLlama model, long n) {
    DenseMemory d = new DenseMemory(model.manager());
    int heads = model.config().numHeads();
    int dim = model.config().headDim();
    SplittableRandom r = new SplittableRandom(1);
    try (NDManager tmp = model.manager().newSubManager()) {
      for (long done = 0; done < n; done += 65_536) {
        int c = (int) Math.min(65_536, n - done);
        float[] k = new float[heads * c * dim];
        for (int i = 0; i < k.length; i++) {
          k[i] = (float) r.nextGaussian();
        }
        NDArray keys = tmp.create(k, new Shape(1, heads, c, dim));
        d.append(1, keys, keys, tmp.zeros(new Shape(1, c)));
      }
    }
    return d;
  }

  /** Records how long each memory search takes. */
  private static final class Timed extends ForwardingMemory {
    final List<Double> searches = new ArrayList<>();

    Timed(Memory inner) {
      super(inner);
    }

    @Override
    public Retrieved retrieve(int layer, NDArray queries) {
      long s = System.nanoTime();
      Retrieved r = inner.retrieve(layer, queries);
      searches.add((System.nanoTime() - s) / 1e6);
      return r;
    }
  }
}
