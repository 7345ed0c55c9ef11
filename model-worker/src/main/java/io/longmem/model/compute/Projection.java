package io.longmem.model.compute;

import ai.djl.ndarray.NDArray;
import ai.djl.nn.core.Linear;

/** x @ W^T by a weight matrix [out, in] as checkpoints store it, in float32 or bfloat16. */
public interface Projection extends AutoCloseable {
  /** @param x [..., in] float32; returns [..., out] float32 on x's manager */
  NDArray apply(NDArray x);

  /** Bytes the weights occupy. */
  long bytes();

  @Override
  void close();

  /** The float32 projection by a DJL array (owned by its manager: close does nothing). */
  static Projection float32(NDArray weight) {
    return new Projection() {
      @Override
      public NDArray apply(NDArray x) {
        return Linear.linear(x, weight).singletonOrThrow();
      }

      @Override
      public long bytes() {
        return weight.size() * 4;
      }

      @Override
      public void close() {}
    };
  }
}
