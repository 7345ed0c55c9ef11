package io.longmem.memory.shard;

import java.util.List;

/**
 * What one token contributes to a collection: for each memory layer, a key and a value of
 * {@code heads x headDim} numbers, stored as float32 or float16.
 */
public record ShardLayout(List<Integer> layers, int heads, int headDim, Storage storage) {

  /** On-disk element type. bfloat16 memory is stored as float32, which holds it exactly. */
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
        default: throw new IllegalArgumentException("storage dtype must be float32 or float16, got " + s);
      }
    }
  }

  public ShardLayout {
    layers = List.copyOf(layers);
    if (layers.isEmpty()) {
      throw new IllegalArgumentException("a collection needs at least one memory layer");
    }
    if (heads <= 0 || headDim <= 0) {
      throw new IllegalArgumentException("heads and head_dim must be positive, got " + heads + ", " + headDim);
    }
  }

  /** Numbers per token per layer in the key (and in the value). */
  public int width() {
    return heads * headDim;
  }

  static String layerFile(int layer) {
    return String.format("layer-%02d.arrow", layer);
  }

  static String indexFile(int layer, int head) {
    return String.format("layer-%02d.head-%02d.faiss", layer, head);
  }
}
