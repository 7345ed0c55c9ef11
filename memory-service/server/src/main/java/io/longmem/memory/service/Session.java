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
 *
 * <p>What it holds is counted in bytes (its runs as reserved, its positions, its indexes), charged
 * before anything is allocated against its own limit and the node's budget for all sessions, and
 * given back when it is closed: a token limit alone let a wide session exhaust the heap.
 */
final class Session implements MemorySource, AutoCloseable {
  private final String id;
  private final List<Integer> layers;
  private final int heads;
  private final int headDim;
  private final long maxTokens;
  private final long maxBytes;
  private final ByteBudget budget;
  /** bytes charged to the budget; guarded by the write lock */
  private long bytes;
  private boolean closed;
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
      try {
        for (int h = 0; h < heads; h++) {
          indexes[h] = FaissIndex.create(headDim, "Flat");
        }
      } catch (RuntimeException e) {
        close();
        throw e;
      }
    }

    void close() {
      for (FaissIndex i : indexes) {
        if (i != null) {
          i.close();
        }
      }
    }

    /** The capacity that holds {@code needed} rows: twice the last, or just enough where twice would not fit. */
    int capacityFor(int needed, long room) {
      if (needed <= positions.length) {
        return positions.length;
      }
      long doubled = Math.min(Math.max(needed, 2L * positions.length), Math.min(maxTokens, Integer.MAX_VALUE));
      return (doubled - positions.length) * runRow > room ? needed : (int) doubled;
    }

    /** Makes room for {@code capacity} rows (charged by the caller). */
    void reserve(int capacity) {
      if (capacity <= positions.length) {
        return;
      }
      int floats = Math.multiplyExact(capacity, headDim);
      for (int h = 0; h < heads; h++) {
        keys[h] = Arrays.copyOf(keys[h], floats);
        values[h] = Arrays.copyOf(values[h], floats);
      }
      positions = Arrays.copyOf(positions, capacity);
    }
  }

  /**
   * What an empty Flat index (an IDMap over IndexFlatIP) costs natively, with the allocator's
   * slack; its rows are counted apart ({@link #indexRow}).
   */
  static final long INDEX_BYTES = 1024;
  /** a reserved row of one layer: per head a key and a value, and a position */
  private final long runRow;
  /** a row in one layer's indexes: per head the key and its id */
  private final long indexRow;

  /** A session limited by tokens only. */
  Session(String id, List<Integer> layers, int heads, int headDim, long maxTokens) {
    this(id, layers, heads, headDim, maxTokens, Long.MAX_VALUE, ByteBudget.unlimited("sessions"));
  }

  /**
   * @param maxBytes what this session may hold
   * @param budget what all sessions of the node may hold, charged as this one grows
   */
  Session(String id, List<Integer> layers, int heads, int headDim, long maxTokens, long maxBytes, ByteBudget budget) {
    this.id = id;
    this.layers = List.copyOf(layers);
    this.heads = heads;
    this.headDim = headDim;
    this.maxTokens = maxTokens;
    this.maxBytes = maxBytes;
    this.budget = budget;
    this.runRow = 2L * heads * headDim * Float.BYTES + Integer.BYTES;
    this.indexRow = (long) heads * ((long) headDim * Float.BYTES + Long.BYTES);
    charge(SearchCost.mul(layers.size(), heads, INDEX_BYTES), "its " + layers.size() * (long) heads + " indexes");
    try {
      for (int l : layers) {
        if (byLayer.containsKey(l)) {
          throw RequestException.invalid("layers: layer " + l + " is named twice");
        }
        byLayer.put(l, new Layer());
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /** Charges n more bytes to this session and to the node's budget, or refuses (RESOURCE_EXHAUSTED). */
  private void charge(long n, String forWhat) {
    if (n > maxBytes - bytes) {
      throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "session " + id + " would hold "
          + SearchCost.add(bytes, n) + " bytes with " + forWhat + " (keys, values, positions and indexes), more "
          + "than its limit of " + maxBytes + " (max_session_mb)");
    }
    budget.take(n, () -> "session " + id + " (" + forWhat + ")");
    bytes += n;
  }

  /** Bytes this session holds. */
  long bytes() {
    lock.readLock().lock();
    try {
      return bytes;
    } finally {
      lock.readLock().unlock();
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
      int[] at = new int[n];
      for (int t = 0; t < n; t++) {
        // Integer.MIN_VALUE is Hits.LATER ("read when written"): a negative position poisoned every answer
        long p = positioned ? block.positions()[t] : (long) base + block.positions()[t];
        if (p < 0 || p >= Integer.MAX_VALUE) {
          throw RequestException.invalid("positions: " + p + " at token " + t + " is outside [0, "
              + (Integer.MAX_VALUE - 1) + "]");
        }
        at[t] = (int) p;
      }
      int capacity = l.capacityFor(base + n, maxBytes - bytes - (long) n * indexRow);
      charge(SearchCost.add(SearchCost.mul(capacity - l.positions.length, runRow), SearchCost.mul(n, indexRow)),
          n + " more tokens in layer " + block.layer());
      l.reserve(capacity);
      long[] ids = new long[n];
      for (int t = 0; t < n; t++) {
        ids[t] = base + t;
        l.positions[base + t] = at[t];
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
    return CompletableFuture.supplyAsync(() -> searchNow(q, pool), pool);
  }

  /** Exact top-k of the session's pairs for each head and query; pairs name the session. */
  Hits search(SearchQuery q) {
    return searchNow(q, Runnable::run);
  }

  /** {@link #search(SearchQuery)}, stopping between heads when {@code work}'s caller has gone. */
  private Hits searchNow(SearchQuery q, Executor work) {
    Work.check(work);
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
        Work.check(work);
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
    if (closed) {
      throw RequestException.notFound("session " + id + " was dropped (or unused too long)");
    }
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
      if (closed) {
        return;
      }
      closed = true;
      byLayer.values().forEach(Layer::close);
      byLayer.clear();
      budget.give(bytes);
      bytes = 0;
    } finally {
      lock.writeLock().unlock();
    }
  }
}
