package io.longmem.model.compute;

import io.longmem.io.InputException;
import java.util.Locale;

/**
 * The element type of the model's large matmuls. FLOAT32 is the reference; BFLOAT16 holds those
 * weights once in bfloat16 and multiplies on oneDNN (AMX where the CPU has it), accumulating in
 * float32; everything else (norms, softmax, rotary, memory rounding) stays float32.
 */
public enum ComputeDType {
  FLOAT32,
  BFLOAT16;

  /** The command-line name: float32 or bfloat16. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses a command-line value, with a one-line error naming the option. */
  public static ComputeDType parse(String s) {
    for (ComputeDType d : values()) {
      if (d.label().equals(s)) {
        return d;
      }
    }
    throw new InputException("--compute-dtype must be float32 or bfloat16, got '" + s + "'");
  }
}
