package io.longmem.model;

import io.longmem.io.InputException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.types.DataType;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.compute.Bf16Rounding;

/**
 * Rounds float32 memory to the values of {@code mem_dtype}, staying in float32.
 *
 * <p>bfloat16 keeps 8 significant bits: x is scaled by the power of two u = 2^(exponent(x) - 7)
 * (exact), rounded half-to-even like torch's cast, and scaled back. The exponent comes from log2
 * and is corrected by one where log2 rounded across a power of two. DJL cannot hold BF16 arrays,
 * so this is how the reference's {@code .to(torch.bfloat16)} is reproduced on any device.
 */
final class MemRounding {
  // bfloat16 on the CPU: one native pass (Bf16Rounding) where its library loads, else the ops below
  private MemRounding() {}

  static NDArray round(NDArray x, MemDType dtype) {
    switch (dtype) {
      case FLOAT32:
        return x;
      case FLOAT16:
        return x.toType(DataType.FLOAT16, false).toType(DataType.FLOAT32, false);
      case BFLOAT16:
        return !x.getDevice().isGpu() && Bf16Rounding.available() ? Bf16Rounding.roundTrip(x) : roundBFloat16(x);
      default:
        throw new InputException(dtype.toString());
    }
  }

  /** bfloat16 rounding from float32 ops (any device; tests compare it with the native pass). */
  static NDArray roundBFloat16(NDArray x) {
    NDArray a = x.abs();
    NDArray e = a.log2().floor().maximum(-126f).minimum(127f); // log2(0) = -inf: bf16 subnormal spacing
    NDArray two = x.getManager().create(2f);
    NDArray u = two.pow(e.sub(7f));
    NDArray y = a.div(u);
    u = NDArrays.where(y.gte(256f), u.mul(2f), u);
    u = NDArrays.where(y.lt(128f).logicalAnd(e.gt(-126f)), u.div(2f), u);
    NDArray rounded = a.div(u).round().mul(u).mul(x.sign());
    // keep inf and NaN as they are; sign() of -0.0 is 0, which is what bf16(-0.0) compares equal to
    return NDArrays.where(x.isInfinite().logicalOr(x.isNaN()), x, rounded);
  }
}
