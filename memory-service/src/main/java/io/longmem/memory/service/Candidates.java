package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.faiss.MappedReads;
import io.longmem.memory.shard.MemoryCollection;
import java.lang.ref.Reference;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The refine step of approximate search on one node: per head, the shards' candidate lists (raw
 * ids and estimated scores, best first) are merged per query into a pool of the best estimates,
 * the pool is re-scored exactly against the stored keys, and only the k best become pairs of the
 * answer. Nothing is built for candidates that lose.
 *
 * <p>Heads are independent: {@link #rescoreHead} may run for different heads on different threads
 * (each writes only its own {@link Hits.Head}; the answer's document list is shared under a lock).
 */
final class Candidates {
  private final List<MemoryCollection.Shard> shards;
  private final SearchQuery q;
  private final int pool;
  private final Hits out;
  private final int[] sourceOf;
  /** per shard, its document index -> the answer's, -1 until used; guarded by {@link #docs} */
  private final int[][] docSlot;
  private final Map<String, Integer> docs = new HashMap<>();
  /** whether a shard stores float16 (else float32); collections of both may be searched at once */
  private final boolean[] float16;
  private final boolean mixed;

  Candidates(List<MemoryCollection.Shard> shards, SearchQuery q, int pool) {
    this.shards = shards;
    this.q = q;
    this.pool = pool;
    this.out = new Hits(q.heads(), q.queries(), q.k(), q.headDim());
    int count = shards.size();
    sourceOf = new int[count];
    docSlot = new int[count][];
    float16 = new boolean[count];
    for (int s = 0; s < count; s++) {
      float16[s] = shards.get(s).isFloat16();
      sourceOf[s] = out.addSource(MemoryNode.payload(shards.get(s), q.layer()));
      docSlot[s] = new int[shards.get(s).documents().size()];
      Arrays.fill(docSlot[s], -1);
    }
    boolean any16 = false;
    boolean any32 = false;
    for (boolean f : float16) {
      any16 |= f;
      any32 |= !f;
    }
    mixed = any16 && any32;
  }

  /** The answer, once every head is done. */
  Hits hits() {
    return out;
  }

  /** Merges head h's candidates (one list per shard, in the order of the shards), re-scores, keeps the k best. */
  void rescoreHead(int h, FaissIndex.Result[] byShard) {
    int n = q.queries();
    int k = q.k();
    int dim = q.headDim();
    Hits.Head head = out.perHead[h];
    float[] queries = q.head(h);
    int[] candShard = new int[pool];
    long[] candRow = new long[pool];
    long[] ranked = new long[pool];
    long[] addresses = new long[pool];
    float[] exact = new float[pool];
    Cursors cursors = new Cursors(byShard);
    MemoryNode.RowSlots chosen = new MemoryNode.RowSlots(n * k);
    for (int i = 0; i < n; i++) {
      // the pool: the best estimates over every shard's list
      int c = 0;
      cursors.start(i);
      while (c < pool && !cursors.isEmpty()) {
        int s = cursors.best();
        candShard[c] = s;
        candRow[c] = cursors.take();
        c++;
      }
      // exact q.k of the pool, best k kept
      score(h, queries, i * dim, candShard, candRow, c, addresses, exact);
      for (int j = 0; j < c; j++) {
        ranked[j] = ((long) sortable(exact[j]) << 32) | (0xffffffffL & ~j); // ties: earlier candidate first
      }
      int kept = top(ranked, c, k);
      for (int r = 0; r < kept; r++) {
        long packed = ranked[kept - 1 - r];
        int j = ~(int) packed;
        int s = candShard[j];
        long row = candRow[j];
        long id = ((long) s << 40) | row; // shards hold fewer than 2^40 rows
        int slot = chosen.get(id);
        if (slot < 0) {
          slot = head.addPair(sourceOf[s], row, document(s, row), Hits.LATER);
          chosen.put(id, slot);
        }
        head.scores[i * k + r] = unsortable((int) (packed >> 32));
        head.slots[i * k + r] = slot;
      }
    }
  }

  /** exact[j] = the query . the key of candidate j (head h), read where it lies, in native code. */
  private void score(int h, float[] queries, int qOff, int[] candShard, long[] candRow, int c, long[] addresses,
      float[] exact) {
    int layer = q.layer();
    int dim = q.headDim();
    if (!mixed) {
      for (int j = 0; j < c; j++) {
        addresses[j] = shards.get(candShard[j]).address(layer, candRow[j], h, true);
      }
      MappedReads.innerProducts(queries, qOff, dim, addresses, c, c > 0 && float16[candShard[0]], exact);
    } else {
      // one pass per storage type, scattered back
      int[] which = new int[c];
      float[] part = new float[c];
      for (boolean half : new boolean[] {true, false}) {
        int m = 0;
        for (int j = 0; j < c; j++) {
          if (float16[candShard[j]] == half) {
            addresses[m] = shards.get(candShard[j]).address(layer, candRow[j], h, true);
            which[m++] = j;
          }
        }
        MappedReads.innerProducts(queries, qOff, dim, addresses, m, half, part);
        for (int t = 0; t < m; t++) {
          exact[which[t]] = part[t];
        }
      }
    }
    Reference.reachabilityFence(shards); // their files stay mapped while the native loop reads them
  }

  private int document(int s, long row) {
    MemoryCollection.Shard shard = shards.get(s);
    int d = shard.documentIndexOf(row);
    synchronized (docs) {
      if (docSlot[s][d] < 0) {
        docSlot[s][d] = out.document(shard.documents().get(d).id(), docs);
      }
      return docSlot[s][d];
    }
  }

  /**
   * Moves the k largest of a[0..n) to a[0..min(k, n)), ascending, and returns how many: a min-heap
   * of k over the pool (the pool is 16x k by default; sorting it all was a tenth of a search).
   */
  static int top(long[] a, int n, int k) {
    if (n <= k) {
      Arrays.sort(a, 0, n);
      return n;
    }
    for (int i = k / 2 - 1; i >= 0; i--) {
      siftDown(a, i, k);
    }
    for (int j = k; j < n; j++) {
      if (a[j] > a[0]) {
        a[0] = a[j];
        siftDown(a, 0, k);
      }
    }
    Arrays.sort(a, 0, k);
    return k;
  }

  private static void siftDown(long[] heap, int i, int size) {
    long v = heap[i];
    while (true) {
      int child = 2 * i + 1;
      if (child >= size) {
        break;
      }
      if (child + 1 < size && heap[child + 1] < heap[child]) {
        child++;
      }
      if (heap[child] >= v) {
        break;
      }
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = v;
  }

  /** A float's bits as an int whose ascending order is the floats' ascending order. */
  private static int sortable(float f) {
    int bits = Float.floatToIntBits(f);
    return bits >= 0 ? bits : bits ^ 0x7fffffff;
  }

  private static float unsortable(int i) {
    return Float.intBitsToFloat(i >= 0 ? i : i ^ 0x7fffffff);
  }

  /**
   * One query's position in every shard's list, as a binary heap of shards by their next
   * estimate (ties: earlier shard first): taking the pool costs log(shards) per candidate.
   */
  private static final class Cursors {
    private final FaissIndex.Result[] lists;
    private final int[] cursor;
    private final int[] heap;
    private int size;
    private int query;

    Cursors(FaissIndex.Result[] lists) {
      this.lists = lists;
      cursor = new int[lists.length];
      heap = new int[lists.length];
    }

    void start(int query) {
      this.query = query;
      Arrays.fill(cursor, 0);
      size = 0;
      for (int s = 0; s < lists.length; s++) {
        if (hasNext(s)) {
          heap[size] = s;
          up(size++);
        }
      }
    }

    boolean isEmpty() {
      return size == 0;
    }

    int best() {
      return heap[0];
    }

    /** The best shard's next id; that shard moves on. */
    long take() {
      int s = heap[0];
      long id = lists[s].id(query, cursor[s]++);
      if (!hasNext(s)) {
        heap[0] = heap[--size];
      }
      down(0);
      return id;
    }

    private boolean hasNext(int s) {
      return cursor[s] < lists[s].k() && lists[s].id(query, cursor[s]) >= 0;
    }

    private boolean better(int a, int b) {
      float sa = lists[a].score(query, cursor[a]);
      float sb = lists[b].score(query, cursor[b]);
      return sa > sb || (sa == sb && a < b);
    }

    private void up(int i) {
      while (i > 0) {
        int parent = (i - 1) / 2;
        if (!better(heap[i], heap[parent])) {
          return;
        }
        swap(i, parent);
        i = parent;
      }
    }

    private void down(int i) {
      while (true) {
        int l = 2 * i + 1;
        if (l >= size) {
          return;
        }
        int best = l + 1 < size && better(heap[l + 1], heap[l]) ? l + 1 : l;
        if (!better(heap[best], heap[i])) {
          return;
        }
        swap(i, best);
        i = best;
      }
    }

    private void swap(int a, int b) {
      int t = heap[a];
      heap[a] = heap[b];
      heap[b] = t;
    }
  }
}
