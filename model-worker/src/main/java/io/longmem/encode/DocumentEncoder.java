package io.longmem.encode;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.LongLlama;
import io.longmem.model.memory.ReadMemory;
import java.util.Arrays;
import java.util.List;

/**
 * Reads a document the way LongLLaMA reads it (windows of max_position_embeddings tokens in order,
 * each attending to the memory of the windows before it) and returns what its memory layers
 * remembered ({@link LongLlama#read}). Layers after the last memory layer are not computed:
 * nothing there reaches memory.
 */
public final class DocumentEncoder {
  private final LongLlama model;
  private final boolean allLayers;
  private final ReadMemory readMemory;

  public DocumentEncoder(LongLlama model) {
    this(model, false);
  }

  public DocumentEncoder(LongLlama model, boolean allLayers) {
    this(model, allLayers, ReadMemory.DENSE);
  }

  /**
   * @param allLayers compute every layer (and the last token's logits) as a plain forward pass
   *     would: only for measuring what skipping the layers after the last memory layer saves
   * @param readMemory what the windows attend to while reading (dense: the reference)
   */
  public DocumentEncoder(LongLlama model, boolean allLayers, ReadMemory readMemory) {
    this.model = model;
    this.allLayers = allLayers;
    this.readMemory = readMemory;
  }

  /**
   * A document's memory: one block per memory layer (in config order), keys unrotated and values,
   * head-major [heads, tokens, head_dim], rounded to mem_dtype; positions 0..tokens-1. The blocks
   * name no document (the caller knows it).
   */
  public List<MemoryBlock> encode(long[] ids) {
    return encodeBatch(List.of(ids)).get(0);
  }

  /**
   * Reads several documents side by side in the batch dimension (shorter ones right-padded: their
   * real tokens sit in the same windows as when read alone, and padding never reaches memory).
   * Sorting documents by length before batching keeps the padding small.
   *
   * @return per document, its blocks as {@link #encode} returns them
   */
  public List<List<MemoryBlock>> encodeBatch(List<long[]> docs) {
    if (docs.isEmpty()) {
      throw new InputException("no documents");
    }
    int longest = 0;
    for (int b = 0; b < docs.size(); b++) {
      if (docs.get(b).length == 0) {
        throw new InputException("empty document (batch row " + b + ")");
      }
      longest = Math.max(longest, docs.get(b).length);
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
            Arrays.fill(row, 1f);
          }
        }
        Arrays.fill(padding[b], d.length, longest, 0f); // pad id 0 is masked out everywhere
      }
    }
    return model.read(ids, padding, allLayers, readMemory);
  }
}
