package io.longmem.memory.shard;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock.Storage;
import java.util.List;

/**
 * What one token contributes to a collection: for each memory layer, a key and a value of
 * {@code heads x headDim} numbers, stored as float32 or float16
 * ({@link Storage}: bfloat16 memory is stored as float32, which holds it exactly).
 */
public record ShardLayout(List<Integer> layers, int heads, int headDim, Storage storage) {

  public ShardLayout {
    layers = List.copyOf(layers);
    if (layers.isEmpty()) {
      throw new InputException("a collection needs at least one memory layer");
    }
    if (heads <= 0 || headDim <= 0) {
      throw new InputException("heads and head_dim must be positive, got " + heads + ", " + headDim);
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
