package io.longmem.encode;

import io.longmem.memory.api.MemoryBlock;
import ai.djl.ndarray.NDArray;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.ForwardingMemory;
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
  private final boolean allLayers;

  public DocumentEncoder(LongLlama model) {
    this(model, false);
  }

  /**
   * @param allLayers compute every layer (and the last token's logits) as a plain forward pass
   *     would: only for measuring what skipping the layers after the last memory layer saves
   */
  public DocumentEncoder(LongLlama model, boolean allLayers) {
    this.model = model;
    this.allLayers = allLayers;
  }

  /** The shard layout of this model's memory. */
  public ShardLayout layout() {
    return layout(model.config());
  }

  /** The shard layout of a model's memory. */
  public static ShardLayout layout(io.longmem.model.checkpoint.LongLlamaConfig c) {
    return new ShardLayout(c.memLayers(), c.numHeads(), c.headDim(), storage(c));
  }

  /** float16 memory is stored as float16; float32 and bfloat16 (not an Arrow type) as float32. */
  public static MemoryBlock.Storage storage(io.longmem.model.checkpoint.LongLlamaConfig c) {
    return c.memDType() == MemDType.FLOAT16 ? MemoryBlock.Storage.FLOAT16 : MemoryBlock.Storage.FLOAT32;
  }

  /**
   * A document's memory: per memory layer (in config order) keys and values [tokens, heads,
   * head_dim], rounded to mem_dtype, keys unrotated.
   */
  public record Encoded(int tokens, float[][] keys, float[][] values) {}

  public Encoded encode(long[] ids) {
    return encodeBatch(List.of(ids)).get(0);
  }

  /**
   * Reads several documents side by side in the batch dimension (shorter ones right-padded: their
   * real tokens sit in the same windows as when read alone, and padding never reaches memory).
   * Sorting documents by length before batching keeps the padding small.
   */
  public List<Encoded> encodeBatch(List<long[]> docs) {
    if (docs.isEmpty()) {
      throw new IllegalArgumentException("no documents");
    }
    int longest = 0;
    for (int b = 0; b < docs.size(); b++) {
      if (docs.get(b).length == 0) {
        throw new IllegalArgumentException("empty document (batch row " + b + ")");
      }
      longest = Math.max(longest, docs.get(b).length);
    }
    List<Integer> layers = model.config().memLayers();
    if (layers.isEmpty()) {
      throw new IllegalArgumentException("the model has no memory layers: nothing to encode");
    }
    int batch = docs.size();
    long[][] ids = new long[batch][longest];
    float[][] padding = null;
    for (int b = 0; b < batch; b++) {
      long[] d = docs.get(b);
      System.arraycopy(d, 0, ids[b], 0, d.length);
      if (d.length < longest) {
        if (padding == null) {
          padding = new float[batch][longest];
          for (float[] row : padding) {
            java.util.Arrays.fill(row, 1f);
          }
        }
        java.util.Arrays.fill(padding[b], d.length, longest, 0f); // pad id 0 is masked out everywhere
      }
    }
    Recording memory = new Recording(new DenseMemory(model.manager()), batch);
    try (LongLlamaCache cache = model.newCache(batch, memory)) { // closes the memory too
      if (allLayers) {
        try (ai.djl.ndarray.NDManager out = model.manager().newSubManager()) {
          model.forward(cache, ids, padding, false, 0, LongLlama.Output.LAST_LOGITS, out);
        }
      } else {
        model.forward(cache, ids, padding, false, 0, LongLlama.Output.MEMORY_ONLY, null);
      }
      List<Encoded> out = new ArrayList<>(batch);
      for (int b = 0; b < batch; b++) {
        float[][] keys = new float[layers.size()][];
        float[][] values = new float[layers.size()][];
        for (int i = 0; i < layers.size(); i++) {
          keys[i] = memory.rowMajor(layers.get(i), b, true);
          values[i] = memory.rowMajor(layers.get(i), b, false);
          if (keys[i].length != (long) docs.get(b).length * memory.width(layers.get(i))) {
            throw new IllegalStateException("layer " + layers.get(i) + " remembered " + keys[i].length
                / memory.width(layers.get(i)) + " tokens of a " + docs.get(b).length + "-token document");
          }
        }
        out.add(new Encoded(docs.get(b).length, keys, values));
      }
      return out;
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

  /** Dense memory that also copies out, per layer and batch row, the real (unpadded) tokens appended. */
  private static final class Recording extends ForwardingMemory {
    private final int batch;
    /** One append of one row: n real tokens' keys and values as the model holds them, [heads, n, dim]. */
    private record Block(int tokens, float[] keys, float[] values) {}

    /** layer -> per batch row, its blocks in order. */
    private final Map<Integer, List<List<Block>>> appended = new HashMap<>();
    private final Map<Integer, int[]> shapes = new HashMap<>(); // heads, dim

    Recording(DenseMemory inner, int batch) {
      super(inner);
      this.batch = batch;
    }

    @Override
    public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
      inner.append(layer, keys, values, mask);
      long[] s = keys.getShape().getShape(); // [B, H, n, D]
      int heads = (int) s[1];
      int n = (int) s[2];
      int dim = (int) s[3];
      if (s[0] != batch) {
        throw new IllegalStateException("memory append of " + s[0] + " rows, the batch has " + batch);
      }
      shapes.put(layer, new int[] {heads, dim});
      float[] k = keys.toFloatArray();
      float[] v = values.toFloatArray();
      float[] m = mask.toFloatArray(); // [B, n]: 0 for real tokens
      List<List<Block>> rows = appended.computeIfAbsent(layer, l -> {
        List<List<Block>> r = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
          r.add(new ArrayList<>());
        }
        return r;
      });
      int rowSize = heads * n * dim;
      for (int b = 0; b < batch; b++) {
        int real = 0;
        while (real < n && m[b * n + real] == 0f) {
          real++;
        }
        for (int t = real; t < n; t++) {
          if (m[b * n + t] == 0f) {
            throw new IllegalStateException("row " + b + ": a real token after padding (rows must be right-padded)");
          }
        }
        if (real == 0) {
          continue;
        }
        float[] bk = new float[heads * real * dim];
        float[] bv = new float[heads * real * dim];
        for (int h = 0; h < heads; h++) {
          System.arraycopy(k, b * rowSize + h * n * dim, bk, h * real * dim, real * dim);
          System.arraycopy(v, b * rowSize + h * n * dim, bv, h * real * dim, real * dim);
        }
        rows.get(b).add(new Block(real, bk, bv));
      }
    }

    int width(int layer) {
      return shapes.get(layer)[0] * shapes.get(layer)[1];
    }

    /** All pairs a layer remembered for a row, as [tokens, heads, dim] (from [heads, n, dim] per append). */
    float[] rowMajor(int layer, int row, boolean keys) {
      int heads = shapes.get(layer)[0];
      int dim = shapes.get(layer)[1];
      List<Block> parts = appended.get(layer).get(row);
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
  }
}
