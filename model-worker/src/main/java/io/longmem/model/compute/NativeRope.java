package io.longmem.model.compute;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

/**
 * The rotary embedding in one native pass (bfloat16 compute): x * cos + rotate_half(x) * sin with
 * the same float32 products and sum as the six DJL ops it replaces (gathers, negation,
 * concatenation, two products, the sum), each of which wrote a new [B, H, T, D] tensor.
 */
public final class NativeRope {
  private NativeRope() {}

  /**
   * @param x [B, H, T, D] float32
   * @param positions [B, T] int64, each below the tables' length
   * @param cos [positions, D] float32
   * @param sin [positions, D] float32
   * @return [B, H, T, D] float32 on x's manager
   */
  public static NDArray rotate(NDArray x, NDArray positions, NDArray cos, NDArray sin) {
    Shape s = x.getShape();
    Shape p = positions.getShape();
    if (s.dimension() != 4 || p.dimension() != 2 || p.get(0) != s.get(0) || p.get(1) != s.get(2)
        || !cos.getShape().equals(sin.getShape()) || cos.getShape().get(1) != s.get(3)) {
      throw new IllegalArgumentException("rotary embedding of " + s + " at " + p + " by tables " + cos.getShape());
    }
    NDArray out = x.getManager().create(s, DataType.FLOAT32);
    if (x.size() > 0) {
      Bf16Native.rope(Bf16Native.memory(x), Bf16Native.memory(positions, DataType.INT64), Bf16Native.memory(cos),
          Bf16Native.memory(sin), Bf16Native.memory(out), s.get(0), s.get(1), s.get(2), s.get(3),
          cos.getShape().get(0), Bf16Matrix.threads());
    }
    return out;
  }
}
