package io.longmem.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.Memory;

/**
 * What a LongLLaMA remembers between calls for one batch of sequences: per layer the local
 * (generation) cache of at most one window of unrotated keys, values and their positions, the
 * padding mask of that window, and the memory of the memory layers.
 *
 * <p>This is the reference's {@code past_key_values}: local cache plus memory cache, split so that
 * memory can live elsewhere ({@link Memory}).
 */
public final class LongLlamaCache implements AutoCloseable {
  final NDManager manager;
  final Memory memory;
  final int batch;
  /** Per layer {keys [B,H,T,D], values [B,H,T,D], positions [B,T] int64}, or null: no local cache. */
  NDArray[][] local;
  /** [B, T] float 1/0: which local-cache entries are real tokens. */
  NDArray localMask;

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

  /** Tokens in the local cache (0 when there is none). */
  public long localLength() {
    return local == null ? 0 : local[0][0].getShape().get(2);
  }

  void setLocal(NDArray[][] next, NDArray mask) {
    NDArray[][] old = local;
    NDArray oldMask = localMask;
    local = next;
    localMask = mask;
    if (next != null) {
      for (NDArray[] l : next) {
        keep(l);
      }
      keep(mask);
    }
    if (old != null) {
      for (NDArray[] l : old) {
        for (NDArray a : l) {
          if (!contains(next, a)) {
            a.close();
          }
        }
      }
      if (oldMask != mask) {
        oldMask.close();
      }
    }
  }

  private static boolean contains(NDArray[][] arrays, NDArray a) {
    if (arrays == null) {
      return false;
    }
    for (NDArray[] l : arrays) {
      for (NDArray x : l) {
        if (x == a) {
          return true;
        }
      }
    }
    return false;
  }

  private void keep(NDArray... arrays) {
    for (NDArray a : arrays) {
      NDScope.unregister(a);
      a.attach(manager);
    }
  }

  @Override
  public void close() {
    memory.close();
    manager.close();
  }
}
