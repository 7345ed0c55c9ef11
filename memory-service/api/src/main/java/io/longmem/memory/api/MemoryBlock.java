package io.longmem.memory.api;

import io.longmem.io.InputException;
import java.util.Objects;

/**
 * What one memory layer read of one document in one call: the unit that travels from the model to
 * the shard writer and to sessions, in the model's own head-major layout, so nothing between the
 * model and a FAISS {@code add} reorders it (each head's keys are one contiguous [n, headDim] run).
 *
 * <p>Keys are unrotated (as if at position 0) and, like the values, already rounded to the
 * model's {@code mem_dtype}; {@code storage} says how they are kept (bfloat16 memory is kept as
 * float32, which holds it exactly). Arrays are owned by the block: do not change them after.
 *
 * @param layer the model layer that produced the pairs
 * @param document the document they belong to (may be empty for session memory)
 * @param positions [n] each token's position in its document
 * @param heads number of heads H
 * @param headDim head dimension D
 * @param keys [H, n, D] float32
 * @param values [H, n, D] float32
 * @param storage how the numbers are stored (float16 memory holds float16 values exactly)
 */
public record MemoryBlock(int layer, String document, int[] positions, int heads, int headDim, float[] keys,
    float[] values, Storage storage) {

  public MemoryBlock {
    Objects.requireNonNull(document, "document");
    Objects.requireNonNull(storage, "storage");
    if (heads <= 0 || headDim <= 0) {
      throw new InputException("heads and head_dim must be positive, got " + heads + ", " + headDim);
    }
    long expected = (long) heads * positions.length * headDim;
    if (keys.length != expected || values.length != expected) {
      throw new InputException("layer " + layer + ": keys/values hold " + keys.length + "/" + values.length
          + " floats, heads x tokens x head_dim = " + expected);
    }
  }

  /** Number of tokens n. */
  public int tokens() {
    return positions.length;
  }

  /** Offset of head h's first key (or value) in {@link #keys} ({@link #values}). */
  public int headOffset(int h) {
    return h * positions.length * headDim;
  }

  /** Element type of stored memory. */
  public enum Storage {
    FLOAT32, FLOAT16;

    /** Bytes per stored number. */
    public int bytes() {
      return this == FLOAT16 ? 2 : 4;
    }

    public String jsonName() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }

    public static Storage parse(String s) {
      switch (s) {
        case "float32": return FLOAT32;
        case "float16": return FLOAT16;
        default: throw new InputException("storage dtype must be float32 or float16, got " + s);
      }
    }
  }
}
