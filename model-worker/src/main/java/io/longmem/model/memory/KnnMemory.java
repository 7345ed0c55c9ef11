package io.longmem.model.memory;

import ai.djl.ndarray.NDArray;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * What was read so far, in process, answered by kNN: each query of a memory layer attends to the
 * top-k pairs of each head (an inverted file that grows with the memory, {@link HeadIndex}) instead
 * of all of them, so reading a book costs
 * linear time (dense memory is quadratic: every window attends to everything before it). Keys are
 * stored unrotated, as the memory service stores them, so the inner product is the attention
 * score; pairs a query does not get (fewer than k remembered) are masked out, so with k at least
 * the memory's size the attention equals {@link DenseMemory}'s.
 *
 * <p>Holds the pairs on the Java heap (per layer, batch row and head), not in native memory:
 * the resident size is the memory itself plus one index per key and a centroid per list.
 */
public final class KnnMemory implements Memory, MemoryContents {
  private final int batch;
  private final int heads;
  private final int dim;
  private final int k;
  private final HeadIndex.Search search;
  private final Map<Integer, HeadIndex[]> layers = new HashMap<>(); // [row * heads + head]

  /**
   * @param k pairs per head and query
   * @param exact scan every key (exact top-k, linear per query) instead of the inverted file
   */
  public KnnMemory(int batch, int heads, int headDim, int k, boolean exact) {
    if (k < 1) {
      throw new IllegalArgumentException("k must be >= 1, got " + k);
    }
    this.batch = batch;
    this.heads = heads;
    this.dim = headDim;
    this.k = k;
    this.search = exact ? HeadIndex.Search.EXACT : HeadIndex.Search.IVF;
  }

  private HeadIndex[] layer(int layer) {
    return layers.computeIfAbsent(layer, l -> {
      HeadIndex[] a = new HeadIndex[batch * heads];
      for (int i = 0; i < a.length; i++) {
        a[i] = new HeadIndex(dim, search);
      }
      return a;
    });
  }

  /** Keeps each row's real tokens (mask 0); padding never reaches memory. */
  @Override
  public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
    int n = (int) keys.getShape().get(2); // [B, H, n, D]
    float[] kf = keys.toFloatArray();
    float[] vf = values.toFloatArray();
    float[] m = mask.toFloatArray();
    HeadIndex[] index = layer(layer);
    IntStream.range(0, batch * heads).parallel().forEach(bh -> {
      int b = bh / heads;
      int[] real = IntStream.range(0, n).filter(t -> m[b * n + t] == 0f).toArray();
      if (real.length == n) {
        index[bh].add(kf, bh * n * dim, vf, bh * n * dim, dim, n);
      } else {
        float[] k1 = new float[real.length * dim];
        float[] v1 = new float[real.length * dim];
        for (int i = 0; i < real.length; i++) {
          System.arraycopy(kf, (bh * n + real[i]) * dim, k1, i * dim, dim);
          System.arraycopy(vf, (bh * n + real[i]) * dim, v1, i * dim, dim);
        }
        index[bh].add(k1, 0, v1, 0, dim, real.length);
      }
    });
  }

  /** Per query and head the top-k pairs: [B, H, q, k, D] keys and values, [B, H, q, k] mask. */
  @Override
  public Retrieved retrieve(int layer, NDArray queries) {
    HeadIndex[] index = layers.get(layer);
    if (index == null) {
      return null;
    }
    int q = (int) queries.getShape().get(2); // [B, H, q, D]
    float[] all = queries.toFloatArray();
    int cells = Math.multiplyExact(batch * heads, Math.multiplyExact(q, k));
    float[] outK = new float[Math.multiplyExact(cells, dim)];
    float[] outV = new float[outK.length];
    float[] mask = new float[cells];
    Arrays.fill(mask, MASK_MIN);
    IntStream.range(0, batch * heads * q).parallel().forEach(cell -> {
      HeadIndex h = index[cell / q];
      int[] top = h.top(all, cell * dim, k);
      for (int j = 0; j < top.length; j++) {
        int at = cell * k + j;
        h.key(top[j], outK, at * dim);
        h.value(top[j], outV, at * dim);
        mask[at] = 0f;
      }
    });
    return Retrieved.perQuery(queries.getManager(), outK, outV, mask, batch, heads, q, k, dim);
  }

  @Override
  public int pairsPerQuery() {
    return k;
  }

  @Override
  public long size(int layer) {
    HeadIndex[] index = layers.get(layer);
    if (index == null) {
      return 0;
    }
    long most = 0;
    for (int b = 0; b < batch; b++) {
      most = Math.max(most, index[b * heads].size());
    }
    return most;
  }

  @Override
  public float[] keys(int layer, int row, int tokens) {
    return rowOf(layer, row, tokens, true);
  }

  @Override
  public float[] values(int layer, int row, int tokens) {
    return rowOf(layer, row, tokens, false);
  }

  private float[] rowOf(int layer, int row, int tokens, boolean keys) {
    HeadIndex[] index = layer(layer);
    float[] out = new float[Math.multiplyExact(heads * tokens, dim)];
    for (int h = 0; h < heads; h++) {
      HeadIndex head = index[row * heads + h];
      if (head.size() < tokens) {
        throw new IllegalStateException("layer " + layer + " row " + row + " holds " + head.size() + " tokens, asked "
            + tokens);
      }
      for (int t = 0; t < tokens; t++) {
        if (keys) {
          head.tokenKey(t, out, (h * tokens + t) * dim);
        } else {
          head.tokenValue(t, out, (h * tokens + t) * dim);
        }
      }
    }
    return out;
  }

  @Override
  public void close() {
    layers.clear();
  }
}
