package io.longmem.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import io.longmem.io.InputException;
import io.longmem.model.memory.Memory;
import java.util.Arrays;

/**
 * Which other batch entries each entry's queries see in FoT's cross-batch attention (training
 * only): entry b sees entries b-1, b-2, ... b-range, of which only the first {@code sees[b]} are
 * unmasked; an entry never sees a later one (no leak). With documents packed k entries each
 * ({@code k}, consecutive entries), the earlier parts of the same document are the positives and
 * entries of earlier documents the negatives; stepping gives the entries of a document rising
 * ranges, so one batch trains several (positives, negatives) mixes.
 */
public final class CrossBatch {
  private final int range;
  /** Per entry, how many of the other contexts it sees (0..range). */
  private final int[] sees;
  /** Entries per document. */
  private final int k;
  /** Per entry, whether only its own document's entries may see it (null: none is). */
  private final boolean[] privateEntries;

  private CrossBatch(int range, int[] sees, int k, boolean[] privateEntries) {
    this.range = range;
    this.sees = sees;
    this.k = k;
    this.privateEntries = privateEntries;
  }

  /**
   * The same ranges, with the blocks of private entries masked for the entries of other
   * documents (entry i belongs to document i / k).
   *
   * @param privateEntries per entry, or null for none
   */
  public CrossBatch hiding(boolean[] privateEntries) {
    if (privateEntries != null && privateEntries.length != sees.length) {
      throw new IllegalArgumentException(privateEntries.length + " private flags for " + sees.length + " entries");
    }
    return new CrossBatch(range, sees, k, privateEntries == null ? null : privateEntries.clone());
  }

  /** Whether entry b sees the block of entry src (one of the {@code sees(b)} before it). */
  private boolean visible(int b, int j, int src) {
    return j < sees[b] && (privateEntries == null || !privateEntries[src] || src / k == b / k);
  }

  /**
   * The cross-batch of the published FoT code: each entry sees {@code range} earlier entries, or
   * with {@code stepping} and k > 1 the i-th entry of a document sees
   * min(i * ceil((range + 1) / (k - 1)), range) of them; never more than the entries before it.
   *
   * @param batch entries in the batch, a multiple of k
   * @param k entries per document (1: one document per entry)
   */
  public static CrossBatch of(int batch, int range, int k, boolean stepping) {
    if (range < 0) {
      throw new InputException("cross-batch range must be >= 0, got " + range);
    }
    if (k < 1 || batch < 1 || batch % k != 0) {
      throw new InputException("batch size " + batch + " must be a positive multiple of the entries per document " + k);
    }
    // an entry never sees more than the entries before it: a larger range only adds masked blocks
    range = Math.min(range, batch - 1);
    int contexts = range + 1;
    int step = (contexts + Math.max(k - 1, 1) - 1) / Math.max(k - 1, 1);
    int[] sees = new int[batch];
    for (int b = 0; b < batch; b++) {
      int pack = k == 1 || !stepping ? contexts : Math.min((b % k) * step + 1, contexts);
      sees[b] = Math.min(pack, b + 1) - 1;
    }
    return new CrossBatch(range, sees, k, null);
  }

  /** No other entry: ordinary attention. */
  public static CrossBatch none(int batch) {
    return new CrossBatch(0, new int[batch], 1, null);
  }

  public int range() {
    return range;
  }

  /** How many other entries entry {@code b} sees. */
  public int sees(int b) {
    return sees[b];
  }

  public int batch() {
    return sees.length;
  }

  @Override
  public String toString() {
    return "CrossBatch(range " + range + ", sees " + Arrays.toString(sees) + ")";
  }

  /**
   * The other entries' pairs for each entry as a shared memory answer: keys and values
   * [B, H, range * L, D] (entry b's j-th block is entry b-1-j's, modulo B) and the additive mask
   * [B, 1, 1, range * L] that hides blocks the entry may not see. Null when the range is 0.
   *
   * @param keys [B, H, L, D] the layer's keys before rotation (= rotated as if at position 0)
   */
  Memory.Retrieved pairs(NDArray keys, NDArray values) {
    if (range == 0) {
      return null;
    }
    Shape s = keys.getShape();
    int batch = (int) s.get(0);
    if (batch != sees.length) {
      throw new IllegalArgumentException("cross-batch for " + sees.length + " entries, the batch has " + batch);
    }
    long heads = s.get(1);
    long length = s.get(2);
    long dim = s.get(3);
    long[] selector = new long[batch * range];
    float[] mask = new float[batch * range * (int) length];
    for (int b = 0; b < batch; b++) {
      for (int j = 0; j < range; j++) {
        int src = Math.floorMod(b - 1 - j, batch);
        selector[b * range + j] = src;
        if (!visible(b, j, src)) {
          Arrays.fill(mask, (b * range + j) * (int) length, (b * range + j + 1) * (int) length, Memory.MASK_MIN);
        }
      }
    }
    NDArray index = owned(keys.getManager().create(selector));
    NDArray k = gather(keys, index, batch, heads, length, dim);
    NDArray v = gather(values, index, batch, heads, length, dim);
    NDArray m = owned(keys.getManager().create(mask, new Shape(batch, 1, 1, (long) range * length)));
    return new Memory.Retrieved(k, v, m);
  }

  /**
   * A copy that libtorch owns: DJL wraps a Java array in a direct buffer that only the wrapper keeps
   * reachable, while autograd keeps the tensor (an index, a mask) until backward.
   */
  static NDArray owned(NDArray wrapped) {
    NDArray copy = wrapped.duplicate();
    wrapped.close();
    return copy;
  }

  private NDArray gather(NDArray a, NDArray index, int batch, long heads, long length, long dim) {
    return a.get(new NDIndex("{}", index)).reshape(batch, range, heads, length, dim).transpose(0, 2, 1, 3, 4)
        .reshape(batch, heads, range * length, dim);
  }
}
