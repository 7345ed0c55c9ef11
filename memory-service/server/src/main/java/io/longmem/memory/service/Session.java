package io.longmem.memory.service;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Memory of a document being read at query time (prompt windows, a generation's overflow), held
 * by the service between calls and searched exactly (a Flat index per head) next to collections.
 */
final class Session implements MemorySource, AutoCloseable {
  private final String id;
  private final List<Integer> layers;
  private final int heads;
  private final int headDim;
  private final long maxTokens;
  private final Map<Integer, Layer> byLayer = new HashMap<>();
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  volatile long lastUsed = System.nanoTime();

  /**
   * One layer's pairs, head-major as the model reads them: per head a run of keys and one of values
   * [capacity, dim] of which the first {@code rows} are filled, and a Flat index per head. Runs grow
   * geometrically, so an append costs its own tokens (amortized), not the layer's; filled rows are
   * never written again, so a search may read them after its lock is released.
   */
  private final class Layer {
    final float[][] keys = new float[heads][0];
    final float[][] values = new float[heads][0];
    int[] positions = new int[0];
    int rows;
    final FaissIndex[] indexes = new FaissIndex[heads];

    Layer() {
      for (int h = 0; h < heads; h++) {
        indexes[h] = FaissIndex.create(headDim, "Flat");
      }
    }

    /** Makes room for {@code needed} rows (at most the session's limit, which was checked). */
    void reserve(int needed) {
      if (needed <= positions.length) {
        return;
      }
      int capacity = (int) Math.min(Math.max(needed, 2L * positions.length), Math.min(maxTokens, Integer.MAX_VALUE));
      int floats = Math.multiplyExact(capacity, headDim);
      for (int h = 0; h < heads; h++) {
        keys[h] = Arrays.copyOf(keys[h], floats);
        values[h] = Arrays.copyOf(values[h], floats);
      }
      positions = Arrays.copyOf(positions, capacity);
    }
  }

  Session(String id, List<Integer> layers, int heads, int headDim, long maxTokens) {
    this.id = id;
    this.layers = List.copyOf(layers);
    this.heads = heads;
    this.headDim = headDim;
    this.maxTokens = maxTokens;
    for (int l : layers) {
      byLayer.put(l, new Layer());
    }
  }

  String id() {
    return id;
  }

  int heads() {
    return heads;
  }

  int headDim() {
    return headDim;
  }

  boolean hasLayer(int layer) {
    return byLayer.containsKey(layer);
  }

  /** {@link #append(MemoryBlock, boolean)} of a block whose positions are its tokens' own. */
  long append(MemoryBlock block) {
    return append(block, true);
  }

  /**
   * Appends a block's tokens to its layer ({@link Sessions} checked its shape and values): each
   * head's [n, dim] run of keys and values straight after that head's rows, and into that head's
   * index. The block's positions are kept as they are when {@code positioned}, else counted on
   * from the rows the layer holds (a request that names none: 0.. in arrival order).
   *
   * @return tokens now in that layer
   */
  long append(MemoryBlock block, boolean positioned) {
    lock.writeLock().lock();
    try {
      int n = block.tokens();
      Layer l = layer(block.layer());
      if (l.rows + (long) n > maxTokens) {
        throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "session " + id + " would hold "
            + (l.rows + (long) n) + " tokens in layer " + block.layer() + ", the limit is " + maxTokens);
      }
      int base = l.rows;
      l.reserve(base + n);
      long[] ids = new long[n];
      for (int t = 0; t < n; t++) {
        ids[t] = base + t;
        l.positions[base + t] = positioned ? block.positions()[t] : base + block.positions()[t];
      }
      for (int h = 0; h < heads; h++) {
        int from = block.headOffset(h);
        System.arraycopy(block.keys(), from, l.keys[h], base * headDim, n * headDim);
        System.arraycopy(block.values(), from, l.values[h], base * headDim, n * headDim);
      }
      for (int h = 0; h < heads; h++) {
        l.indexes[h].add(block.keys(), block.headOffset(h), n, ids);
      }
      l.rows += n;
      lastUsed = System.nanoTime();
      return l.rows;
    } finally {
      lock.writeLock().unlock();
    }
  }

  /** {@link #search(SearchQuery)} on the pool. */
  @Override
  public CompletableFuture<Hits> search(SearchQuery q, Executor pool) {
    return CompletableFuture.supplyAsync(() -> search(q), pool);
  }

  /** Exact top-k of the session's pairs for each head and query; pairs name the session. */
  Hits search(SearchQuery q) {
    lock.readLock().lock();
    try {
      Layer l = layer(q.layer());
      Hits out = new Hits(q.heads(), q.queries(), q.k(), headDim);
      lastUsed = System.nanoTime();
      if (l.rows == 0) {
        return out;
      }
      out.documents.add(id);
      // the runs as they are now: a later append may replace a run (growing it) or fill rows past
      // these, never change the rows this search can return
      float[][] keys = l.keys.clone();
      float[][] values = l.values.clone();
      int source = out.addSource((row, head, key, value, off) -> {
        int at = (int) row * headDim;
        System.arraycopy(keys[head], at, key, off, headDim);
        System.arraycopy(values[head], at, value, off, headDim);
      });
      for (int h = 0; h < heads; h++) {
        FaissIndex.Result r = l.indexes[h].search(q.head(h), q.k());
        Hits.Head head = out.perHead[h];
        Map<Long, Integer> slotOf = new HashMap<>();
        for (int i = 0; i < q.queries(); i++) {
          for (int j = 0; j < q.k(); j++) {
            long row = r.id(i, j);
            if (row < 0) {
              continue;
            }
            int slot = slotOf.computeIfAbsent(row, x -> head.addPair(source, x, 0, l.positions[(int) (long) x]));
            head.scores[i * q.k() + j] = r.score(i, j);
            head.slots[i * q.k() + j] = slot;
          }
        }
      }
      return out;
    } finally {
      lock.readLock().unlock();
    }
  }

  long tokens(int layer) {
    lock.readLock().lock();
    try {
      return layer(layer).rows;
    } finally {
      lock.readLock().unlock();
    }
  }

  private Layer layer(int layer) {
    Layer l = byLayer.get(layer);
    if (l == null) {
      throw RequestException.invalid("layer " + layer + " is not a layer of session " + id + " (layers " + layers + ")");
    }
    return l;
  }

  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      for (Layer l : byLayer.values()) {
        for (FaissIndex i : l.indexes) {
          i.close();
        }
      }
      byLayer.clear();
    } finally {
      lock.writeLock().unlock();
    }
  }
}
