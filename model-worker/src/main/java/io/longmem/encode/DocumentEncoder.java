package io.longmem.encode;

import ai.djl.ndarray.NDArray;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.Memory;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a document the way LongLLaMA reads it (windows of max_position_embeddings tokens in order,
 * each attending to the memory of the windows before it) and returns what its memory layers
 * remembered. Layers after the last memory layer are not computed: nothing there reaches memory.
 */
public final class DocumentEncoder {
  private final LongLlama model;

  public DocumentEncoder(LongLlama model) {
    this.model = model;
  }

  /** The shard layout of this model's memory. */
  public ShardLayout layout() {
    var c = model.config();
    return new ShardLayout(c.memLayers(), c.numHeads(), c.headDim(),
        c.memDType() == MemDType.FLOAT16 ? ShardLayout.Storage.FLOAT16 : ShardLayout.Storage.FLOAT32);
  }

  /**
   * A document's memory: per memory layer (in config order) keys and values [tokens, heads,
   * head_dim], rounded to mem_dtype, keys unrotated.
   */
  public record Encoded(int tokens, float[][] keys, float[][] values) {}

  public Encoded encode(long[] ids) {
    if (ids.length == 0) {
      throw new IllegalArgumentException("empty document");
    }
    List<Integer> layers = model.config().memLayers();
    if (layers.isEmpty()) {
      throw new IllegalArgumentException("the model has no memory layers: nothing to encode");
    }
    Recording memory = new Recording(new DenseMemory(model.manager()));
    try (LongLlamaCache cache = model.newCache(1, memory)) { // closes the memory too
      model.forward(cache, new long[][] {ids}, null, false, 0, LongLlama.Output.MEMORY_ONLY, null);
      float[][] keys = new float[layers.size()][];
      float[][] values = new float[layers.size()][];
      for (int i = 0; i < layers.size(); i++) {
        keys[i] = memory.rowMajor(layers.get(i), true);
        values[i] = memory.rowMajor(layers.get(i), false);
      }
      return new Encoded(ids.length, keys, values);
    }
  }

  /** Encodes a document and appends its memory to a shard. */
  public void encodeInto(ShardWriter shard, String document, long[] ids) throws IOException {
    Encoded e = encode(ids);
    int[] positions = new int[e.tokens()];
    for (int i = 0; i < positions.length; i++) {
      positions[i] = i;
    }
    shard.append(document, positions, e.keys(), e.values());
  }

  /** Dense memory that also copies out, per layer, everything appended (batch row 0). */
  private static final class Recording implements Memory {
    private final DenseMemory inner;
    /** One append: n tokens' keys and values as the model holds them, [heads, n, dim]. */
    private record Block(int tokens, float[] keys, float[] values) {}

    private final Map<Integer, List<Block>> appended = new HashMap<>();
    private final Map<Integer, int[]> shapes = new HashMap<>(); // heads, dim

    Recording(DenseMemory inner) {
      this.inner = inner;
    }

    @Override
    public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
      inner.append(layer, keys, values, mask);
      long[] s = keys.getShape().getShape(); // [B, H, n, D]
      if (s[0] != 1) {
        throw new IllegalStateException("the encoder reads one document at a time");
      }
      shapes.put(layer, new int[] {(int) s[1], (int) s[3]});
      appended.computeIfAbsent(layer, l -> new ArrayList<>())
          .add(new Block((int) s[2], keys.toFloatArray(), values.toFloatArray()));
    }

    @Override
    public Retrieved retrieve(int layer, NDArray queries) {
      return inner.retrieve(layer, queries);
    }

    @Override
    public long size(int layer) {
      return inner.size(layer);
    }

    /** All appended pairs of a layer as [tokens, heads, dim] (from the model's [heads, n, dim] per append). */
    float[] rowMajor(int layer, boolean keys) {
      int heads = shapes.get(layer)[0];
      int dim = shapes.get(layer)[1];
      List<Block> parts = appended.get(layer);
      int total = parts.stream().mapToInt(Block::tokens).sum();
      float[] out = new float[total * heads * dim];
      int base = 0;
      for (Block p : parts) {
        int n = p.tokens();
        float[] src = keys ? p.keys() : p.values();
        for (int h = 0; h < heads; h++) {
          for (int t = 0; t < n; t++) {
            System.arraycopy(src, (h * n + t) * dim, out, ((base + t) * heads + h) * dim, dim);
          }
        }
        base += n;
      }
      return out;
    }

    @Override
    public void close() {
      inner.close();
    }
  }
}
