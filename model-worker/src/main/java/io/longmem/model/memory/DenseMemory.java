package io.longmem.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import java.util.HashMap;
import java.util.Map;

/**
 * All of memory, in process: every query attends to every remembered pair. This is what the
 * reference implementation does, and what other backends are checked against.
 */
public final class DenseMemory implements Memory, MemoryContents {
  private final NDManager manager;
  /** Per layer: keys, values, mask buffers ([B,H,cap,D], [B,H,cap,D], [B,cap]) of which the first n are memory. */
  private final Map<Integer, Layer> layers = new HashMap<>();

  private static final class Layer {
    NDArray keys;
    NDArray values;
    NDArray mask;
    long n;

    long capacity() {
      return keys.getShape().get(2);
    }
  }

  public DenseMemory(NDManager parent) {
    this.manager = parent.newSubManager();
  }

  /**
   * Copies the pairs into the layer's buffers, which grow by doubling: appending a window costs
   * its own size (amortized), not the memory's (joining arrays anew per window was quadratic in the
   * document's length), and the buffers are the only arrays memory holds.
   */
  @Override
  public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
    long t = keys.getShape().get(2);
    Layer l = layers.get(layer);
    if (l == null || l.n + t > l.capacity()) {
      long cap = Math.max(t, l == null ? t : Math.max(2 * l.capacity(), l.n + t));
      Layer next = new Layer();
      next.keys = buffer(keys.getShape(), 2, cap, keys.getDataType());
      next.values = buffer(values.getShape(), 2, cap, values.getDataType());
      next.mask = buffer(mask.getShape(), 1, cap, mask.getDataType());
      if (l != null) {
        next.keys.set(new NDIndex(":, :, :{}", l.n), l.keys.get(new NDIndex(":, :, :{}", l.n)));
        next.values.set(new NDIndex(":, :, :{}", l.n), l.values.get(new NDIndex(":, :, :{}", l.n)));
        next.mask.set(new NDIndex(":, :{}", l.n), l.mask.get(new NDIndex(":, :{}", l.n)));
        next.n = l.n;
        l.keys.close();
        l.values.close();
        l.mask.close();
      }
      layers.put(layer, next);
      l = next;
    }
    l.keys.set(new NDIndex(":, :, {}:{}", l.n, l.n + t), keys);
    l.values.set(new NDIndex(":, :, {}:{}", l.n, l.n + t), values);
    l.mask.set(new NDIndex(":, {}:{}", l.n, l.n + t), mask);
    l.n += t;
  }

  private NDArray buffer(ai.djl.ndarray.types.Shape like, int axis, long cap, ai.djl.ndarray.types.DataType type) {
    long[] dims = like.getShape();
    dims[axis] = cap;
    NDArray a = manager.zeros(new ai.djl.ndarray.types.Shape(dims), type);
    NDScope.unregister(a);
    return a;
  }

  @Override
  public Retrieved retrieve(int layer, NDArray queries) {
    NDArray[] m = contents(layer);
    if (m == null) {
      return null;
    }
    long b = m[2].getShape().get(0);
    long n = m[2].getShape().get(1);
    return new Retrieved(m[0], m[1], m[2].reshape(b, 1, 1, n));
  }

  @Override
  public long size(int layer) {
    Layer l = layers.get(layer);
    return l == null ? 0 : l.n;
  }

  /** Views of the stored keys, values and mask of a layer ([B,H,M,D], [B,H,M,D], [B,M]), or null. */
  public NDArray[] contents(int layer) {
    Layer l = layers.get(layer);
    if (l == null) {
      return null;
    }
    return new NDArray[] {l.keys.get(new NDIndex(":, :, :{}", l.n)), l.values.get(new NDIndex(":, :, :{}", l.n)),
        l.mask.get(new NDIndex(":, :{}", l.n))};
  }

  /** Row b's first n tokens of [B, H, M, D] as [H, n, D]: in reading order a row's real tokens come first. */
  @Override
  public float[] keys(int layer, int row, int tokens) {
    return row(layers.get(layer).keys, row, tokens);
  }

  @Override
  public float[] values(int layer, int row, int tokens) {
    return row(layers.get(layer).values, row, tokens);
  }

  private static float[] row(NDArray a, int b, int n) {
    try (NDArray r = a.get(new NDIndex(b + ", :, :" + n + ", :"))) {
      return r.toFloatArray();
    }
  }

  @Override
  public void close() {
    manager.close();
    layers.clear();
  }
}
