package io.longmem.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.compute.Bf16Matrix;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.compute.Projection;
import java.util.SplittableRandom;

/**
 * What the hardware alone allows a model: the rate of one GEMM of the model's shape through the
 * same call the model makes (for bfloat16 {@link Bf16Matrix}, so the prefill bound includes the
 * activation rounding; for float32 DJL's matmul), and the memory bandwidth of a large copy (a
 * decode step streams every weight once).
 */
public final class ComputeBounds {
  private ComputeBounds() {}

  /**
   * FLOP/s of the gate/up projection's GEMM, [rows, hidden] x [hidden, 2 x intermediate], through
   * the {@link Projection} the model uses in that compute dtype (DJL's float32 matmul, or
   * {@link Bf16Matrix}), with the threads the model's matmuls get (ai.djl.pytorch.num_threads).
   * The ratio of the two rates is what the hardware gives bfloat16 compute over float32 at this
   * shape, before any work outside the matmuls.
   */
  public static double gemmRate(LongLlamaConfig c, int rows, ComputeDType dtype) {
    int k = c.hiddenSize();
    int n = 2 * c.intermediateSize();
    float[] w = new float[n * k];
    SplittableRandom r = new SplittableRandom(3);
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (r.nextDouble() - 0.5) * 0.05f;
    }
    try (NDManager nd = NDManager.newBaseManager();
         Projection p = dtype == ComputeDType.BFLOAT16 ? Bf16Matrix.of(w, n, k)
             : Projection.float32(nd.create(w, new Shape(n, k)))) {
      w = null;
      NDArray x = nd.randomUniform(-1f, 1f, new Shape(rows, k));
      p.apply(x).close(); // warm-up: primitive creation, pages
      int times = 3;
      long t = System.nanoTime();
      for (int i = 0; i < times; i++) {
        p.apply(x).close();
      }
      double seconds = (System.nanoTime() - t) / 1e9 / times;
      return 2.0 * rows * k * n / seconds;
    }
  }

  /** Bytes per second of a 512 MiB memcpy between native buffers. */
  public static double copyBandwidth() {
    long bytes = 512L << 20;
    int times = 4;
    return bytes * times / Bf16Matrix.copySeconds(bytes, times);
  }

  /**
   * Matmul FLOPs of the attention (q.k^T and weights.v, every key of a query's window counted, as
   * the matmuls compute them) when a prompt of {@code tokens} is read as the model reads it: all but
   * the last {@code last_context_length} tokens into memory a window at a time, each window
   * attending to itself and, in memory layers, to everything read before; then the rest in one call.
   */
  public static double attentionFlops(LongLlamaConfig c, long tokens) {
    long window = c.maxPositionEmbeddings();
    long memLength = Math.max(0, tokens - c.lastContextLength());
    double h = c.hiddenSize();
    double flops = 0;
    for (long beg = 0; beg < tokens; ) {
      long end = beg < memLength ? Math.min(memLength, beg + window) : tokens;
      long len = end - beg;
      flops += 4 * h * len * (c.numLayers() * (double) len + c.memLayers().size() * (double) beg);
      beg = end;
    }
    return flops;
  }

  /** Matmul FLOPs of the projections (q/k/v, o, gate/up, down) for {@code tokens} tokens, plus lm_head rows. */
  public static double projectionFlops(LongLlamaConfig c, long tokens, long lmHeadRows) {
    double h = c.hiddenSize();
    double perToken = c.numLayers() * (4 * h * h + 3 * h * c.intermediateSize());
    return 2 * (tokens * perToken + lmHeadRows * h * c.vocabSize());
  }
}
