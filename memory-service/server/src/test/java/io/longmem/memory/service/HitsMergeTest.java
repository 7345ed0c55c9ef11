package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * {@link Hits#merge} against the top-k of the union of the parts' lists, computed here from the
 * parts' own (doc, row, score) entries: scores, documents, positions, keys and values of every
 * rank, pairs deduplicated, ties to the earlier part, fewer than k where the union is short.
 */
class HitsMergeTest {
  static final int HEADS = 3;
  static final int DIM = 4;

  /** One entry of a part's list, as the brute force sees it. */
  record Entry(int part, int rank, float score, String doc, long row, int position, float[] key, float[] value) {}

  /** The key of (source tag, row, head): a value nothing else has. */
  static float[] vector(int tag, long row, int head, boolean key) {
    float[] v = new float[DIM];
    for (int d = 0; d < DIM; d++) {
      v[d] = tag * 1000 + row * 10 + head + d * 0.125f + (key ? 0 : 0.0625f);
    }
    return v;
  }

  /**
   * A random part: per head, a pool of pairs over its documents and sources, and per query a
   * sorted list of up to partK choices (some repeated across queries: one pair, many queries).
   */
  static Hits part(Random r, int tagBase, int queries, int partK, int length, boolean ties, List<List<Entry>> truth,
      int partIndex) {
    Hits h = new Hits(HEADS, queries, partK, DIM);
    Map<String, Integer> docs = new HashMap<>();
    int sources = 1 + r.nextInt(2);
    int[] tags = new int[sources];
    for (int s = 0; s < sources; s++) {
      int tag = tagBase + s;
      tags[s] = tag;
      h.addSource((row, head, key, value, off) -> {
        System.arraycopy(vector(tag, row, head, true), 0, key, off, DIM);
        System.arraycopy(vector(tag, row, head, false), 0, value, off, DIM);
      });
    }
    for (int head = 0; head < HEADS; head++) {
      Hits.Head hh = h.head(head);
      int pairs = 1 + r.nextInt(6);
      int[] pairSource = new int[pairs];
      long[] pairRow = new long[pairs];
      int[] pairDoc = new int[pairs];
      int[] pairPos = new int[pairs];
      for (int p = 0; p < pairs; p++) {
        pairSource[p] = r.nextInt(sources);
        pairRow[p] = p * 7 + r.nextInt(5); // distinct per head
        pairDoc[p] = h.document("doc-" + r.nextInt(4), docs); // documents shared between parts
        pairPos[p] = r.nextInt(100);
        assertEquals(p, hh.addPair(pairSource[p], pairRow[p], pairDoc[p], pairPos[p]));
      }
      for (int q = 0; q < queries; q++) {
        int n = Math.min(length, partK);
        float[] scores = new float[n];
        for (int j = 0; j < n; j++) {
          scores[j] = ties ? r.nextInt(4) : (float) r.nextGaussian();
        }
        Arrays.sort(scores);
        List<Integer> order = new ArrayList<>();
        for (int p = 0; p < pairs; p++) {
          order.add(p);
        }
        java.util.Collections.shuffle(order, r);
        for (int j = 0; j < n; j++) {
          int slot = order.get(j % pairs); // a list names a pair at most once
          if (j >= pairs) {
            break;
          }
          float score = scores[n - 1 - j];
          hh.scores()[q * partK + j] = score;
          hh.slots()[q * partK + j] = slot;
          truth.get(head * queries + q).add(new Entry(partIndex, j, score, h.documents().get(pairDoc[slot]),
              pairRow[slot], pairPos[slot], vector(tags[pairSource[slot]], pairRow[slot], head, true),
              vector(tags[pairSource[slot]], pairRow[slot], head, false)));
        }
      }
    }
    return h;
  }

  @Test
  void mergeIsTheTopKOfTheUnion() {
    Random r = new Random(11);
    for (int trial = 0; trial < 200; trial++) {
      int queries = 1 + r.nextInt(3);
      int k = 1 + r.nextInt(6);
      int partCount = 1 + r.nextInt(4);
      boolean ties = trial % 3 == 0;
      List<List<Entry>> truth = new ArrayList<>();
      for (int i = 0; i < HEADS * queries; i++) {
        truth.add(new ArrayList<>());
      }
      List<Hits> parts = new ArrayList<>();
      for (int p = 0; p < partCount; p++) {
        int partK = 1 + r.nextInt(8); // parts may hold fewer or more per query than the merge keeps
        parts.add(part(r, p * 10, queries, partK, r.nextInt(partK + 1), ties, truth, p));
      }
      Hits merged = Hits.merge(parts, HEADS, queries, k, DIM);
      for (int head = 0; head < HEADS; head++) {
        Hits.Head mh = merged.head(head);
        float[][] kv = mh.keysAndValues();
        int[] pairDoc = mh.pairDocument();
        int[] pairPos = mh.pairPosition();
        Set<Integer> used = new HashSet<>();
        Set<String> distinct = new HashSet<>();
        for (int q = 0; q < queries; q++) {
          List<Entry> all = new ArrayList<>(truth.get(head * queries + q));
          all.sort(Comparator.comparingDouble((Entry e) -> -e.score()).thenComparingInt(Entry::part)
              .thenComparingInt(Entry::rank));
          String where = "trial " + trial + " head " + head + " query " + q;
          for (int j = 0; j < k; j++) {
            int slot = mh.slots()[q * k + j];
            if (j >= all.size()) {
              assertEquals(-1, slot, where + " rank " + j + ": fewer than k");
              assertEquals(Float.NEGATIVE_INFINITY, mh.scores()[q * k + j], where);
              continue;
            }
            Entry e = all.get(j);
            assertEquals(e.score(), mh.scores()[q * k + j], 0f, where + " rank " + j);
            assertEquals(e.doc(), merged.documents().get(pairDoc[slot]), where + " rank " + j);
            assertEquals(e.position(), pairPos[slot], where + " rank " + j);
            assertArrayEquals(e.key(), Arrays.copyOfRange(kv[0], slot * DIM, (slot + 1) * DIM), where);
            assertArrayEquals(e.value(), Arrays.copyOfRange(kv[1], slot * DIM, (slot + 1) * DIM), where);
            used.add(slot);
            distinct.add(e.part() + "/" + e.row() + "/" + Arrays.toString(e.key()));
          }
        }
        // one pair per distinct winner, and no pair that no query chose
        assertEquals(distinct.size(), mh.pairs(), "trial " + trial + " head " + head);
        assertEquals(mh.pairs(), used.size(), "trial " + trial + " head " + head);
      }
      assertEquals(new HashSet<>(merged.documents()).size(), merged.documents().size(), "documents listed once");
    }
  }

  @Test
  void mergingNothingGivesNothing() {
    Hits merged = Hits.merge(List.of(), HEADS, 2, 3, DIM);
    for (int h = 0; h < HEADS; h++) {
      assertEquals(0, merged.head(h).pairs());
      assertArrayEquals(new int[] {-1, -1, -1, -1, -1, -1}, merged.head(h).slots());
    }
    assertEquals(List.of(), merged.documents());
  }
}
