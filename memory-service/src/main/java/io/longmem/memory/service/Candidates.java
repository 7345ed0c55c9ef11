package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.shard.MemoryCollection;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The refine step of approximate search on one node: the shards' candidate lists (raw ids and
 * estimated scores, best first) are merged per query into a pool of the best estimates, the pool
 * is re-scored exactly with the stored keys, and only the k best become pairs of the answer.
 * Nothing is built for candidates that lose.
 */
final class Candidates {
  private Candidates() {}

  static Hits rescore(List<MemoryCollection.Shard> shards, FaissIndex.Result[][] byShard, SearchQuery q, int pool) {
    int heads = q.heads();
    int n = q.queries();
    int k = q.k();
    int dim = q.headDim();
    int layer = q.layer();
    int count = shards.size();
    Hits out = new Hits(heads, n, k, dim);
    int[] sourceOf = new int[count];
    int[][] docSlot = new int[count][];
    for (int s = 0; s < count; s++) {
      sourceOf[s] = out.addSource(MemoryNode.payload(shards.get(s), layer));
      docSlot[s] = new int[shards.get(s).documents().size()];
      Arrays.fill(docSlot[s], -1);
    }
    Map<String, Integer> docs = new HashMap<>();
    float[] key = new float[dim];
    int[] cursor = new int[count];
    int[] candShard = new int[pool];
    long[] candRow = new long[pool];
    long[] ranked = new long[pool];
    MemoryNode.RowSlots chosen = new MemoryNode.RowSlots(n * k);
    for (int h = 0; h < heads; h++) {
      Hits.Head head = out.perHead[h];
      float[] queries = q.head(h);
      for (int i = 0; i < n; i++) {
        // the pool: the best estimates over every shard's list (ties: earlier shard first)
        Arrays.fill(cursor, 0);
        int c = 0;
        while (c < pool) {
          int best = -1;
          float bestScore = Float.NEGATIVE_INFINITY;
          for (int s = 0; s < count; s++) {
            FaissIndex.Result r = byShard[s][h];
            if (cursor[s] < r.k() && r.id(i, cursor[s]) >= 0 && (best < 0 || r.score(i, cursor[s]) > bestScore)) {
              best = s;
              bestScore = r.score(i, cursor[s]);
            }
          }
          if (best < 0) {
            break;
          }
          candShard[c] = best;
          candRow[c] = byShard[best][h].id(i, cursor[best]++);
          c++;
        }
        // exact q.k of the pool, best k kept
        for (int j = 0; j < c; j++) {
          shards.get(candShard[j]).readKey(layer, candRow[j], h, key, 0);
          float dot = 0;
          for (int d = 0; d < dim; d++) {
            dot += queries[i * dim + d] * key[d];
          }
          int bits = Float.floatToIntBits(dot);
          int sortable = bits >= 0 ? bits : bits ^ 0x7fffffff; // ascending int order = ascending float order
          ranked[j] = ((long) sortable << 32) | (0xffffffffL & ~j); // ties: earlier candidate first
        }
        Arrays.sort(ranked, 0, c);
        for (int r = 0; r < Math.min(k, c); r++) {
          long packed = ranked[c - 1 - r];
          int j = ~(int) packed;
          int s = candShard[j];
          long row = candRow[j];
          long id = ((long) s << 40) | row; // shards hold fewer than 2^40 rows
          int slot = chosen.get(id);
          if (slot < 0) {
            MemoryCollection.Shard shard = shards.get(s);
            int d = shard.documentIndexOf(row);
            if (docSlot[s][d] < 0) {
              docSlot[s][d] = out.document(shard.documents().get(d).id(), docs);
            }
            slot = head.addPair(sourceOf[s], row, docSlot[s][d], Hits.LATER);
            chosen.put(id, slot);
          }
          int sortable = (int) (packed >> 32);
          head.scores[i * k + r] = Float.intBitsToFloat(sortable >= 0 ? sortable : sortable ^ 0x7fffffff);
          head.slots[i * k + r] = slot;
        }
      }
      chosen.clear();
    }
    return out;
  }
}
