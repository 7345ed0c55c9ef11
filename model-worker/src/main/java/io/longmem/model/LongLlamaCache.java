package io.longmem.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.Memory;
import java.util.ArrayList;
import java.util.List;

/**
 * What a LongLLaMA remembers between calls for one batch of sequences: per layer the local
 * (generation) cache of at most one window of unrotated keys, values and their positions, the
 * padding mask of that window, and the memory of the memory layers.
 *
 * <p>This is the reference's {@code past_key_values}: local cache plus memory cache, split so that
 * memory can live elsewhere ({@link Memory}).
 */
public final class LongLlamaCache implements AutoCloseable {

  /**
   * One layer's local context: keys and values [B, H, T, D] (unrotated) and their positions [B, T]
   * int64. Operations return new arrays in the current NDScope; nothing here is changed in place.
   */
  record Context(NDArray keys, NDArray values, NDArray positions) {
    long length() {
      return keys.getShape().get(2);
    }

    /** This context followed by {@code next}. */
    Context then(Context next) {
      return new Context(NDArrays.concat(new NDList(keys, next.keys), 2),
          NDArrays.concat(new NDList(values, next.values), 2),
          NDArrays.concat(new NDList(positions, next.positions), 1));
    }

    /** Tokens [0, t): what leaves a local context that overflows. */
    Context before(long t) {
      return new Context(keys.get(new NDIndex(":, :, :{}", t)), values.get(new NDIndex(":, :, :{}", t)),
          positions.get(new NDIndex(":, :{}", t)));
    }

    /** Tokens [t, length). */
    Context from(long t) {
      return new Context(keys.get(new NDIndex(":, :, {}:", t)), values.get(new NDIndex(":, :, {}:", t)),
          positions.get(new NDIndex(":, {}:", t)));
    }

    NDArray[] arrays() {
      return new NDArray[] {keys, values, positions};
    }
  }

  private final NDManager manager;
  private final Memory memory;
  private final int batch;
  /** Per layer its local context, or null: no local cache. */
  private Context[] local;
  /** [B, T] float 1/0: which local-cache entries are real tokens. */
  private NDArray localMask;

  LongLlamaCache(NDManager parent, int batch, Memory memory) {
    this.manager = parent.newSubManager();
    this.batch = batch;
    this.memory = memory != null ? memory : new DenseMemory(manager);
  }

  public Memory memory() {
    return memory;
  }

  public int batch() {
    return batch;
  }

  /** Whether a local cache is held (a call with {@code useCache} filled it). */
  public boolean hasLocal() {
    return local != null;
  }

  /** Tokens in the local cache (0 when there is none). */
  public long localLength() {
    return local == null ? 0 : local[0].length();
  }

  /** Layer {@code l}'s local context, or null without a local cache. */
  Context local(int l) {
    return local == null ? null : local[l];
  }

  /**
   * Per row, the position of the next input token: positions continue after the local cache
   * (its max position + 1), or start at 0 without one.
   */
  long[] positionsAfter() {
    if (local == null) {
      return new long[batch];
    }
    long[] next = local[0].positions().max(new int[] {1}).toLongArray();
    for (int b = 0; b < batch; b++) {
      next[b]++;
    }
    return next;
  }

  /** [B, T + L] float 1/0: the local cache's padding mask followed by that of the input, {@code pad} [B, L]. */
  NDArray maskWith(NDArray pad) {
    return local == null ? pad : NDArrays.concat(new NDList(localMask, pad), 1);
  }

  /**
   * Makes {@code next} (one context per layer, all of one length T) the local cache, with the last
   * T entries of {@code mask2d} [B, >= T] as its padding mask. The arrays move from the current
   * NDScope into this cache; those of the old local cache are freed.
   */
  void keep(Context[] next, NDArray mask2d) {
    long kept = next[0].length();
    NDArray mask = mask2d.get(new NDIndex(":, {}:", mask2d.getShape().get(1) - kept));
    List<NDArray> arrays = new ArrayList<>();
    for (Context c : next) {
      arrays.addAll(List.of(c.arrays()));
    }
    arrays.add(mask);
    for (NDArray a : arrays) {
      NDScope.unregister(a);
      a.attach(manager);
    }
    replace(next, mask, arrays);
  }

  /** Drops the local cache (a call without {@code useCache}); memory stays. */
  void dropLocal() {
    replace(null, null, List.of());
  }

  private void replace(Context[] next, NDArray mask, List<NDArray> kept) {
    Context[] old = local;
    NDArray oldMask = localMask;
    local = next;
    localMask = mask;
    if (old == null) {
      return;
    }
    for (Context c : old) {
      for (NDArray a : c.arrays()) {
        if (kept.stream().noneMatch(k -> k == a)) {
          a.close();
        }
      }
    }
    if (oldMask != mask) {
      oldMask.close();
    }
  }

  @Override
  public void close() {
    memory.close();
    manager.close();
  }
}
