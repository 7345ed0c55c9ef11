package io.longmem.model.memory;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
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
  private final Map<Integer, NDArray[]> layers = new HashMap<>(); // keys, values, mask

  public DenseMemory(NDManager parent) {
    this.manager = parent.newSubManager();
  }

  @Override
  public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
    NDArray[] old = layers.get(layer);
    NDArray[] next;
    if (old == null) {
      next = new NDArray[] {keys.duplicate(), values.duplicate(), mask.duplicate()};
    } else {
      next = new NDArray[] {
          NDArrays.concat(new NDList(old[0], keys), 2),
          NDArrays.concat(new NDList(old[1], values), 2),
          NDArrays.concat(new NDList(old[2], mask), 1)};
    }
    for (NDArray a : next) {
      NDScope.unregister(a);
      a.attach(manager);
    }
    layers.put(layer, next);
    if (old != null) {
      for (NDArray a : old) {
        a.close();
      }
    }
  }

  @Override
  public Retrieved retrieve(int layer, NDArray queries) {
    NDArray[] m = layers.get(layer);
    if (m == null) {
      return null;
    }
    long b = m[2].getShape().get(0);
    long n = m[2].getShape().get(1);
    return new Retrieved(m[0], m[1], m[2].reshape(b, 1, 1, n));
  }

  @Override
  public long size(int layer) {
    NDArray[] m = layers.get(layer);
    return m == null ? 0 : m[0].getShape().get(2);
  }

  /** The stored keys, values and mask of a layer ([B,H,M,D], [B,H,M,D], [B,M]), or null. */
  public NDArray[] contents(int layer) {
    return layers.get(layer);
  }

  /** Row b's first n tokens of [B, H, M, D] as [H, n, D]: in reading order a row's real tokens come first. */
  @Override
  public float[] keys(int layer, int row, int tokens) {
    return row(layers.get(layer)[0], row, tokens);
  }

  @Override
  public float[] values(int layer, int row, int tokens) {
    return row(layers.get(layer)[1], row, tokens);
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
