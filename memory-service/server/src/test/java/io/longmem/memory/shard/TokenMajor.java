package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Tests keep their memory token-major ([n, heads, head_dim] per layer: one row of the Arrow file
 * per token, easy to compare with what a shard reads back); a {@link ShardWriter} takes the
 * model's head-major {@link MemoryBlock}s. This is the one conversion between the two.
 */
public final class TokenMajor {
  private TokenMajor() {}

  /** One head-major block per layer of the layout from token-major keys/values [n, heads, head_dim]. */
  public static List<MemoryBlock> blocks(ShardLayout layout, String document, int[] positions, float[][] keys,
      float[][] values) {
    if (keys.length != layout.layers().size() || values.length != keys.length) {
      throw new IllegalArgumentException("keys/values for " + keys.length + "/" + values.length
          + " layers, the layout has " + layout.layers().size());
    }
    List<MemoryBlock> blocks = new ArrayList<>();
    for (int l = 0; l < keys.length; l++) {
      blocks.add(new MemoryBlock(layout.layers().get(l), document, positions, layout.heads(), layout.headDim(),
          headMajor(layout, keys[l], positions.length), headMajor(layout, values[l], positions.length),
          layout.storage()));
    }
    return blocks;
  }

  /** Appends token-major memory of one document to a shard, as blocks. */
  public static void append(ShardWriter sw, String document, int[] positions, float[][] keys, float[][] values)
      throws IOException {
    sw.append(document, blocks(sw.layout(), document, positions, keys, values));
  }

  /** [n, heads, dim] as [heads, n, dim]. */
  static float[] headMajor(ShardLayout layout, float[] tokenMajor, int n) {
    int heads = layout.heads();
    int dim = layout.headDim();
    if (tokenMajor.length != (long) n * heads * dim) {
      throw new IllegalArgumentException(tokenMajor.length + " floats, expected " + (long) n * heads * dim);
    }
    float[] out = new float[tokenMajor.length];
    for (int i = 0; i < n; i++) {
      for (int h = 0; h < heads; h++) {
        System.arraycopy(tokenMajor, (i * heads + h) * dim, out, (h * n + i) * dim, dim);
      }
    }
    return out;
  }
}
