package io.longmem.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import io.longmem.model.compute.NativeRope;

/**
 * Rotary position embedding with LLaMA's half-split layout, computed in float32 the way the
 * reference computes it (so positions far into a window round the same way).
 */
final class Rope {
  private final NDManager manager;
  private final int dim;
  private final double base;
  private NDArray cos;
  private NDArray sin;
  private long length;

  /** Whether {@link #rotate} runs as one native pass (bfloat16 compute, CPU). */
  private final boolean nativePass;

  Rope(NDManager parent, int dim, double base, int initialLength) {
    this(parent, dim, base, initialLength, false);
  }

  Rope(NDManager parent, int dim, double base, int initialLength, boolean nativePass) {
    this.nativePass = nativePass;
    this.manager = parent.newSubManager();
    this.dim = dim;
    this.base = base;
    grow(initialLength);
  }

  private synchronized void grow(long needed) {
    if (needed <= length) {
      return;
    }
    try (NDScope scope = new NDScope()) {
      scope.suppressNotUsedWarning();
      NDArray exponent = manager.arange(0, dim, 2, DataType.FLOAT32).div(dim);
      NDArray invFreq = manager.ones(exponent.getShape()).div(manager.create((float) base).pow(exponent));
      NDArray t = manager.arange(0, (int) needed, 1, DataType.FLOAT32);
      NDArray freqs = t.expandDims(1).mul(invFreq.expandDims(0));
      NDArray emb = NDArrays.concat(new NDList(freqs, freqs), 1);
      NDArray c = emb.cos();
      NDArray s = emb.sin();
      NDScope.unregister(c, s);
      if (cos != null) {
        cos.close();
        sin.close();
      }
      cos = c;
      sin = s;
      length = needed;
    }
  }

  /** Rotates x [B, H, T, D] by relative positions rel [B, T] (int64). */
  NDArray rotate(NDArray x, NDArray rel, long maxPosition) {
    grow(maxPosition + 1);
    if (nativePass) {
      synchronized (this) {
        return NativeRope.rotate(x, rel, cos, sin);
      }
    }
    NDArray c;
    NDArray s;
    synchronized (this) {
      c = cos.get(new NDIndex("{}", rel)).expandDims(1);
      s = sin.get(new NDIndex("{}", rel)).expandDims(1);
    }
    long half = dim / 2;
    NDArray x1 = x.get(new NDIndex("..., :{}", half));
    NDArray x2 = x.get(new NDIndex("..., {}:", half));
    NDArray rotated = NDArrays.concat(new NDList(x2.neg(), x1), -1);
    return x.mul(c).add(rotated.mul(s));
  }
}
