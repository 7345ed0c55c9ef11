package io.longmem.memory.service;

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

  /** One layer's pairs: keys/values [rows, heads, dim] and a Flat index per head. */
  private final class Layer {
    float[] keys = new float[0];
    float[] values = new float[0];
    int[] positions = new int[0];
    int rows;
    final FaissIndex[] indexes = new FaissIndex[heads];

    Layer() {
      for (int h = 0; h < heads; h++) {
        indexes[h] = FaissIndex.create(headDim, "Flat");
      }
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

  /**
   * Appends n tokens: keys and values [heads, n, dim] (the model's layout), positions [n] or null.
   *
   * @return tokens now in that layer
   */
  long append(int layer, int n, float[] keys, float[] values, int[] positions) {
    lock.writeLock().lock();
    try {
      Layer l = layer(layer);
      if (l.rows + (long) n > maxTokens) {
        throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "session " + id + " would hold "
            + (l.rows + (long) n) + " tokens in layer " + layer + ", the limit is " + maxTokens);
      }
      int width = heads * headDim;
      int base = l.rows;
      l.keys = Arrays.copyOf(l.keys, (base + n) * width);
      l.values = Arrays.copyOf(l.values, (base + n) * width);
      l.positions = Arrays.copyOf(l.positions, base + n);
      float[][] perHead = new float[heads][n * headDim];
      for (int h = 0; h < heads; h++) {
        for (int t = 0; t < n; t++) {
          int src = (h * n + t) * headDim;
          int dst = ((base + t) * heads + h) * headDim;
          System.arraycopy(keys, src, l.keys, dst, headDim);
          System.arraycopy(values, src, l.values, dst, headDim);
          System.arraycopy(keys, src, perHead[h], t * headDim, headDim);
        }
      }
      for (int t = 0; t < n; t++) {
        l.positions[base + t] = positions != null ? positions[t] : base + t;
      }
      long[] ids = new long[n];
      for (int t = 0; t < n; t++) {
        ids[t] = base + t;
      }
      for (int h = 0; h < heads; h++) {
        l.indexes[h].add(perHead[h], ids);
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
      float[] keys = l.keys; // arrays are replaced, never changed, by later appends
      float[] values = l.values;
      int width = heads * headDim;
      int source = out.addSource((row, head, key, value, off) -> {
        int at = (int) (row * width + head * headDim);
        System.arraycopy(keys, at, key, off, headDim);
        System.arraycopy(values, at, value, off, headDim);
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
