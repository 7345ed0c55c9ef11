package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.faiss.MappedReads;
import io.longmem.memory.shard.MemoryCollection;
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
 * The caller holds the shards' {@link MemoryCollection.Shard#pin pins} while it runs: re-scoring
 * reads the keys by address.
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
      sourceOf[s] = out.addSource(LocalShards.payload(shards.get(s), q.layer()));
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

  /**
   * Merges head h's candidates (one list per shard, in the order of the shards), re-scores, keeps
   * the k best.
   *
   * @return how many candidates were re-scored (over every query)
   */
  long rescoreHead(int h, FaissIndex.Result[] byShard) {
    long rescored = 0;
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
    int count = byShard.length;
    int[] valid = new int[count];
    RowSlots chosen = new RowSlots(n * k);
    for (int i = 0; i < n; i++) {
      int c = pool(byShard, i, valid, candShard, candRow);
      rescored += c;
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
    return rescored;
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
   * The pool for query i: the best {@code pool} estimates over every shard's list (each sorted
   * best first), in shard order, as (shard, row) pairs; returns how many. The cut-off estimate is
   * found by bisection over the lists' counts (log(shards x list) steps, not a merge of the pool),
   * candidates at the cut-off are taken in shard order.
   */
  private int pool(FaissIndex.Result[] lists, int i, int[] valid, int[] candShard, long[] candRow) {
    long total = 0;
    int lo = Integer.MAX_VALUE; // sortable estimates: the lowest and highest over the lists
    int hi = Integer.MIN_VALUE;
    for (int s = 0; s < lists.length; s++) {
      FaissIndex.Result r = lists[s];
      int n = r.k();
      while (n > 0 && r.id(i, n - 1) < 0) {
        n--; // lists end with -1 where a shard had fewer results
      }
      valid[s] = n;
      total += n;
      if (n > 0) {
        hi = Math.max(hi, sortable(r.score(i, 0)));
        lo = Math.min(lo, sortable(r.score(i, n - 1)));
      }
    }
    int cut = Integer.MIN_VALUE; // take every estimate >= cut
    if (total > pool) {
      // the highest cut keeping at least pool candidates
      long a = lo;
      long b = hi;
      while (a < b) {
        long mid = (a + b + 1) >> 1;
        if (atLeast(lists, i, valid, (int) mid) >= pool) {
          a = mid;
        } else {
          b = mid - 1;
        }
      }
      cut = (int) a;
    }
    int c = 0;
    for (int pass = 0; pass < 2 && c < pool; pass++) {
      // pass 0: estimates above the cut; pass 1: at the cut, until the pool is full
      for (int s = 0; s < lists.length && c < pool; s++) {
        FaissIndex.Result r = lists[s];
        for (int j = 0; j < valid[s] && c < pool; j++) {
          int e = sortable(r.score(i, j));
          if (e < cut) {
            break;
          }
          if ((pass == 0) == (e > cut || cut == Integer.MIN_VALUE)) {
            candShard[c] = s;
            candRow[c++] = r.id(i, j);
          }
        }
      }
      if (cut == Integer.MIN_VALUE) {
        break;
      }
    }
    return c;
  }

  /** How many estimates over the lists are >= cut (sortable); each list sorted best first. */
  private static long atLeast(FaissIndex.Result[] lists, int i, int[] valid, int cut) {
    long n = 0;
    for (int s = 0; s < lists.length; s++) {
      int a = 0;
      int b = valid[s]; // the first rank below the cut lies in [a, b]
      while (a < b) {
        int mid = (a + b) >>> 1;
        if (sortable(lists[s].score(i, mid)) >= cut) {
          a = mid + 1;
        } else {
          b = mid;
        }
      }
      n += a;
    }
    return n;
  }
}
