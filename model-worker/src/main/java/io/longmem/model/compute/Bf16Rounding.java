package io.longmem.model.compute;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * float32 tensors rounded to bfloat16 values in one native pass (torch's
 * {@code .to(torch.bfloat16)}: round to nearest even), where the native library loads: memory
 * keys and values are rounded to {@code mem_dtype} on every window, and composing the rounding
 * from DJL's float32 ops (DJL cannot hold bfloat16) takes twenty passes and tensors.
 */
public final class Bf16Rounding {
  private Bf16Rounding() {}

  /** Whether {@link #roundTrip} can run here (the native library loads; CPU tensors only). */
  public static boolean available() {
    return Bf16Native.tryLoad();
  }

  /** x rounded to bfloat16 and widened back: a new float32 CPU tensor on x's manager. */
  public static NDArray roundTrip(NDArray x) {
    if (x.getDataType() != DataType.FLOAT32 || x.getDevice().isGpu()) {
      throw new IllegalArgumentException("bfloat16 rounding of a " + x.getDataType() + " tensor on " + x.getDevice());
    }
    NDArray out = x.getManager().create(x.getShape(), DataType.FLOAT32);
    if (x.size() > 0) {
      Bf16Native.roundTrip(Bf16Native.memory(x), Bf16Native.memory(out), x.size());
    }
    return out;
  }
}
