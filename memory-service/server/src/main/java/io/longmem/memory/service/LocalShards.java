package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.shard.MappedFile;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * This node's shards of a search, as one source: one answer for all of them, so that an
 * approximate search keeps one candidate pool over every shard (see {@link #search}). The shards
 * are pinned from the start of the search until the answer is closed: re-scoring and the writing
 * of the answer read their files by address.
 */
final class LocalShards implements MemorySource {
  /** A local shard to search, with its row ranges (null: all rows). */
  record Task(MemoryCollection.Shard shard, ShardLayout layout, long[] ranges) {}

  private final List<Task> tasks;
  private final int refine;
  private final NodeMetrics metrics;

  /** @param refine the pool is refine x k candidates per query (1: no re-scoring) */
  LocalShards(List<Task> tasks, int refine, NodeMetrics metrics) {
    this.tasks = List.copyOf(tasks);
    this.refine = refine;
    this.metrics = metrics;
  }

  /**
   * The exact top-k of these shards. Where an index is approximate, the node keeps a pool of
   * refine x k candidates per query: each shard proposes its best by estimated score (a share of
   * the pool, at least k, four times its even share), the proposals are merged, and only the pool
   * is re-scored with the stored keys: the keys read per query do not grow with the number of
   * shards. One task per head does its FAISS searches over every shard, then its re-scoring, so
   * neither phase waits for the other heads and the whole search spreads over the pool.
   * Exact indexes: one task per shard, merged.
   */
  @Override
  public CompletableFuture<Hits> search(SearchQuery q, Executor pool) {
    List<MappedFile.Pin> pins = new ArrayList<>(tasks.size());
    CompletableFuture<Hits> answer;
    try {
      for (Task t : tasks) {
        pins.add(t.shard().pin());
      }
      answer = approximate(q) ? pooled(q, pool) : exact(q, pool);
    } catch (RuntimeException e) {
      answer = CompletableFuture.failedFuture(e);
    }
    // every task is done (allOf waits for all, also when one fails) before the pins may go
    return answer.whenComplete((hits, e) -> {
      if (hits != null) {
        pins.forEach(hits::hold);
      } else {
        pins.forEach(MappedFile.Pin::close);
      }
    });
  }

  /** Whether the search keeps a refine pool: re-scoring is on and some index is approximate. */
  boolean approximate(SearchQuery q) {
    return refine > 1 && tasks.stream().anyMatch(t -> !t.shard().index(q.layer(), 0).isExact());
  }

  private CompletableFuture<Hits> pooled(SearchQuery q, Executor pool) {
    int candidates = (int) Math.min((long) q.k() * refine, FaissIndex.MAX_K);
    int perShard = proposals(q.k(), candidates, tasks.size());
    Candidates c = new Candidates(tasks.stream().map(Task::shard).toList(), q, candidates);
    List<CompletableFuture<?>> heads = new ArrayList<>(q.heads());
    try {
      for (int h = 0; h < q.heads(); h++) {
        int head = h;
        heads.add(CompletableFuture.runAsync(() -> {
          FaissIndex.Result[] proposed = propose(tasks, q, head, perShard, pool, metrics);
          Work.check(pool);
          long t0 = System.nanoTime();
          long rescored = c.rescoreHead(head, proposed);
          metrics.rescored(rescored, System.nanoTime() - t0);
        }, pool));
      }
    } catch (RuntimeException e) { // the pool refused (the node is closing)
      return failAfter(heads, e);
    }
    return CompletableFuture.allOf(heads.toArray(new CompletableFuture<?>[0])).thenApply(v -> c.hits());
  }

  /** Fails once the tasks already started are done, so that no pin goes while they read. */
  private static <T> CompletableFuture<T> failAfter(List<? extends CompletableFuture<?>> started, RuntimeException e) {
    return CompletableFuture.allOf(started.toArray(new CompletableFuture<?>[0])).handle((v, ignored) -> {
      throw e;
    });
  }

  private CompletableFuture<Hits> exact(SearchQuery q, Executor pool) {
    List<CompletableFuture<Hits>> parts = new ArrayList<>(tasks.size());
    try {
      for (Task t : tasks) {
        parts.add(CompletableFuture.supplyAsync(() -> searchShard(t.shard(), t.layout(), q, t.ranges(), pool, metrics), pool));
      }
    } catch (RuntimeException e) { // the pool refused (the node is closing)
      return failAfter(parts, e);
    }
    return CompletableFuture.allOf(parts.toArray(new CompletableFuture<?>[0])).thenApply(v -> {
      List<Hits> done = parts.stream().map(CompletableFuture::join).toList();
      return done.size() == 1 ? done.get(0) : Hits.merge(done, q.heads(), q.queries(), q.k(), q.headDim());
    });
  }

  /**
   * How many candidates each shard proposes for a pool of {@code candidates}: at least k, four
   * times its even share (a shard holding more of the best pays for it only in recall, not in
   * wrong answers), never more than the pool.
   */
  static int proposals(int k, int candidates, int shards) {
    return (int) Math.min(candidates, Math.max(k, 4L * ((candidates + shards - 1) / Math.max(1, shards))));
  }

  /** Head h's candidates in every shard by the index's estimated scores: raw ids and scores, no pairs yet. */
  private static FaissIndex.Result[] propose(List<Task> tasks, SearchQuery q, int h, int k, Executor work,
      NodeMetrics metrics) {
    FaissIndex.Result[] out = new FaissIndex.Result[tasks.size()];
    for (int s = 0; s < out.length; s++) {
      Work.check(work); // between shards: a search nobody waits for stops here
      Task t = tasks.get(s);
      FaissIndex.SearchParams params = new FaissIndex.SearchParams(q.nprobe(), q.efSearch(), t.ranges());
      int kk = (int) Math.min(k, Math.max(1, t.shard().rows()));
      long t0 = System.nanoTime();
      out[s] = t.shard().index(q.layer(), h).search(q.head(h), kk, params);
      metrics.faiss(System.nanoTime() - t0);
    }
    return out;
  }

  /**
   * Top-k of one shard for every head and query, by the index's scores (exact for Flat, estimated
   * for IVF-PQ where {@link Candidates} re-scores); the pairs are read later, winners only. The
   * caller holds the shard's pin until the answer is written. Stops between heads when {@code
   * work}'s caller has gone.
   */
  static Hits searchShard(MemoryCollection.Shard shard, ShardLayout layout, SearchQuery q, long[] ranges,
      Executor work, NodeMetrics metrics) {
    int heads = layout.heads();
    int layer = q.layer();
    Hits out = new Hits(q.heads(), q.queries(), q.k(), layout.headDim());
    int source = out.addSource(payload(shard, layer));
    Map<String, Integer> docs = new HashMap<>();
    int[] docSlot = new int[shard.documents().size()]; // the shard's document index -> out's, -1 until used
    Arrays.fill(docSlot, -1);
    FaissIndex.SearchParams params = new FaissIndex.SearchParams(q.nprobe(), q.efSearch(), ranges);
    int k = (int) Math.min(q.k(), Math.min(FaissIndex.MAX_K, Math.max(1, shard.rows())));
    RowSlots slotOfRow = new RowSlots(q.queries() * k); // rows chosen in this head -> their pair slot
    for (int h = 0; h < heads; h++) {
      Work.check(work);
      long t0 = System.nanoTime();
      FaissIndex.Result r = shard.index(layer, h).search(q.head(h), k, params);
      metrics.faiss(System.nanoTime() - t0);
      Hits.Head head = out.perHead[h];
      for (int i = 0; i < q.queries(); i++) {
        for (int j = 0; j < k; j++) {
          long row = r.id(i, j);
          if (row < 0) {
            continue;
          }
          int slot = slotOfRow.get(row);
          if (slot < 0) {
            int d = shard.documentIndexOf(row);
            if (docSlot[d] < 0) {
              docSlot[d] = out.document(shard.documents().get(d).id(), docs);
            }
            slot = head.addPair(source, row, docSlot[d], Hits.LATER); // read if it wins
            slotOfRow.put(row, slot);
          }
          head.scores[i * q.k() + j] = r.score(i, j);
          head.slots[i * q.k() + j] = slot;
        }
      }
      slotOfRow.clear();
    }
    return out;
  }

  /** Where a shard's pairs are read: keys and values of a layer, positions for the winners. */
  static Hits.Payload payload(MemoryCollection.Shard shard, int layer) {
    return new Hits.Payload() {
      @Override
      public void read(long row, int head, float[] key, float[] value, int off) {
        shard.readKey(layer, row, head, key, off);
        shard.readValue(layer, row, head, value, off);
      }

      @Override
      public boolean addressable(boolean float16) {
        return shard.isFloat16() == float16;
      }

      @Override
      public long address(long row, int head, boolean key) {
        return shard.address(layer, row, head, key);
      }

      @Override
      public long positionAddress(long row) {
        return shard.positionAddress(row);
      }

      @Override
      public int position(long row) {
        return shard.position(row);
      }
    };
  }
}
