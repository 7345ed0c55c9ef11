package io.longmem.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

/**
 * The one question LongLLaMA's memory layers ask, whatever backs the memory: "for layer L, these
 * queries, which (key, value) pairs do I attend to?", and the one update: "layer L read these
 * tokens; remember them".
 *
 * <p>Keys arrive unrotated (as if at position 0, which is the identity for RoPE) and already
 * rounded to the model's {@code mem_dtype}. The attention code knows nothing else about the
 * backend: dense memory answers with everything (the reference behaviour), a kNN backend with the
 * top-k pairs per head and query.
 */
public interface Memory extends AutoCloseable {
  /**
   * torch.finfo(float32).min: what the reference puts into masked positions, of the attention
   * mask and of memory masks alike.
   */
  float MASK_MIN = -Float.MAX_VALUE;

  /**
   * Remembers tokens a memory layer has read.
   *
   * @param layer the model layer index (one of {@code mem_layers})
   * @param keys [batch, heads, n, head_dim] float32
   * @param values [batch, heads, n, head_dim] float32
   * @param mask [batch, n] additive: 0 for a real token, {@link #MASK_MIN} for padding
   */
  void append(int layer, NDArray keys, NDArray values, NDArray mask);

  /**
   * The pairs these queries attend to, or {@code null} while the layer's memory is empty. Shared
   * answers (dense) belong to the memory; per-query answers ({@link #pairsPerQuery} > 0) belong to
   * the caller, who closes them once used (they can be large).
   *
   * @param queries [batch, heads, q, head_dim], rotated as the layer rotates them
   */
  Retrieved retrieve(int layer, NDArray queries);

  /**
   * 0 when every query attends to the same pairs (dense memory); otherwise the K pairs each query
   * gets, so the model can ask for a block of queries at a time and bound the answer's size.
   */
  default int pairsPerQuery() {
    return 0;
  }

  /** Number of tokens in the memory of a layer (per batch row). */
  long size(int layer);

  @Override
  void close();

  /**
   * Memory pairs for attention. Either shared by all queries: keys/values [B, H, M, D] with mask
   * broadcastable to [B, H, q, M]; or chosen per query: keys/values [B, H, q, K, D] with mask
   * broadcastable to [B, H, q, K].
   */
  record Retrieved(NDArray keys, NDArray values, NDArray mask) {
    /** Per-query pairs from flat arrays: keys and values [B, H, q, k, D], mask [B, H, q, k]. */
    public static Retrieved perQuery(NDManager m, float[] keys, float[] values, float[] mask, long batch, long heads,
        long q, long k, long dim) {
      Shape shape = new Shape(batch, heads, q, k, dim);
      return new Retrieved(m.create(keys, shape), m.create(values, shape), m.create(mask, new Shape(batch, heads, q, k)));
    }

    public boolean perQuery() {
      return keys.getShape().dimension() == 5;
    }
  }
}
