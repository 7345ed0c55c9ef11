package io.longmem.model.checkpoint;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import java.util.Locale;

/**
 * The dtype LongLLaMA casts memory keys and values to ({@code mem_dtype}).
 *
 * <p>DJL 0.36 aborts the JVM when asked for a BF16 array, so memory is held in float32 rounded to
 * the values the dtype can represent: the attention then sees exactly what the reference sees
 * after its {@code .to(mem_dtype)} and {@code .to(float32)}.
 */
public enum MemDType {
  FLOAT32("float32"),
  BFLOAT16("bfloat16"),
  FLOAT16("float16");

  private final String pythonName;

  MemDType(String pythonName) {
    this.pythonName = pythonName;
  }

  public String pythonName() {
    return pythonName;
  }

  /** How memory of this dtype is stored: float16 as float16; float32 and bfloat16 (not an Arrow type) as float32. */
  public MemoryBlock.Storage storage() {
    return this == FLOAT16 ? MemoryBlock.Storage.FLOAT16 : MemoryBlock.Storage.FLOAT32;
  }

  public static MemDType parse(String s) {
    String n = s.toLowerCase(Locale.ROOT).replace("torch.", "");
    switch (n) {
      case "float32":
      case "float":
      case "fp32":
        return FLOAT32;
      case "bfloat16":
      case "bf16":
        return BFLOAT16;
      case "float16":
      case "half":
      case "fp16":
        return FLOAT16;
      default:
        throw new InputException("mem_dtype must be float32, bfloat16 or float16, got '" + s + "'");
    }
  }

  /** Rounds one float to bfloat16 (round to nearest even), as torch's {@code .to(torch.bfloat16)}. */
  public static float roundToBFloat16(float f) {
    int bits = Float.floatToRawIntBits(f);
    if ((bits & 0x7f800000) == 0x7f800000) { // inf stays, NaN stays NaN
      return (bits & 0x007fffff) != 0 ? Float.NaN : f;
    }
    int rounded = bits + 0x7fff + ((bits >>> 16) & 1);
    return Float.intBitsToFloat(rounded & 0xffff0000);
  }
}
