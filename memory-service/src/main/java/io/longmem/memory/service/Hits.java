package io.longmem.memory.service;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What one source (a shard, a session, a remote node) found for a search, or the merge of several:
 * per head, the distinct (key, value) pairs some query selected, and per query its k best as
 * (score, slot into the pairs), best first. The exact top-k of a union is the top-k of the
 * sources' top-k lists, which is what {@link #merge} computes.
 */
public final class Hits {
  final int heads;
  final int queries;
  final int k;
  final int headDim;
  /** document (or session) ids that pairs refer to */
  final List<String> documents = new ArrayList<>();
  final Head[] perHead;

  /** The pairs and choices of one head. */
  public static final class Head {
    int pairs;
    float[] keys = new float[0];
    float[] values = new float[0];
    int[] pairDocument = new int[0];
    int[] pairPosition = new int[0];
    final float[] scores;
    final int[] slots;

    Head(int queries, int k) {
      scores = new float[queries * k];
      slots = new int[queries * k];
      Arrays.fill(scores, Float.NEGATIVE_INFINITY);
      Arrays.fill(slots, -1);
    }

    /** Adds a pair and returns its slot. */
    int addPair(float[] key, int keyOffset, float[] value, int valueOffset, int dim, int document, int position) {
      if (pairs == pairDocument.length) {
        int cap = Math.max(16, pairs * 2);
        keys = Arrays.copyOf(keys, cap * dim);
        values = Arrays.copyOf(values, cap * dim);
        pairDocument = Arrays.copyOf(pairDocument, cap);
        pairPosition = Arrays.copyOf(pairPosition, cap);
      }
      System.arraycopy(key, keyOffset, keys, pairs * dim, dim);
      System.arraycopy(value, valueOffset, values, pairs * dim, dim);
      pairDocument[pairs] = document;
      pairPosition[pairs] = position;
      return pairs++;
    }

    public int pairs() {
      return pairs;
    }

    public float[] keys(int dim) {
      return Arrays.copyOf(keys, pairs * dim);
    }

    public float[] values(int dim) {
      return Arrays.copyOf(values, pairs * dim);
    }

    public int[] pairDocument() {
      return Arrays.copyOf(pairDocument, pairs);
    }

    public int[] pairPosition() {
      return Arrays.copyOf(pairPosition, pairs);
    }

    public float[] scores() {
      return scores;
    }

    public int[] slots() {
      return slots;
    }
  }

  Hits(int heads, int queries, int k, int headDim) {
    this.heads = heads;
    this.queries = queries;
    this.k = k;
    this.headDim = headDim;
    perHead = new Head[heads];
    for (int h = 0; h < heads; h++) {
      perHead[h] = new Head(queries, k);
    }
  }

  public int heads() {
    return heads;
  }

  public int queries() {
    return queries;
  }

  public int k() {
    return k;
  }

  public int headDim() {
    return headDim;
  }

  public List<String> documents() {
    return documents;
  }

  public Head head(int h) {
    return perHead[h];
  }

  int document(String id, Map<String, Integer> index) {
    return index.computeIfAbsent(id, d -> {
      documents.add(d);
      return documents.size() - 1;
    });
  }

  /** The exact top-k of several sources' hits, pairs deduplicated per head. */
  static Hits merge(List<Hits> parts, int heads, int queries, int k, int headDim) {
    Hits out = new Hits(heads, queries, k, headDim);
    Map<String, Integer> docIndex = new HashMap<>();
    int[][] docMap = new int[parts.size()][];
    for (int p = 0; p < parts.size(); p++) {
      List<String> docs = parts.get(p).documents;
      docMap[p] = new int[docs.size()];
      for (int d = 0; d < docs.size(); d++) {
        docMap[p][d] = out.document(docs.get(d), docIndex);
      }
    }
    int[] cursor = new int[parts.size()];
    for (int h = 0; h < heads; h++) {
      Head target = out.perHead[h];
      Map<Long, Integer> copied = new HashMap<>(); // (part, slot) -> merged slot
      for (int q = 0; q < queries; q++) {
        Arrays.fill(cursor, 0);
        for (int r = 0; r < k; r++) {
          // the best next candidate among the parts' lists (ties: earlier part first)
          int best = -1;
          float bestScore = Float.NEGATIVE_INFINITY;
          for (int p = 0; p < parts.size(); p++) {
            Head src = parts.get(p).perHead[h];
            int at = q * k + cursor[p];
            if (cursor[p] < parts.get(p).k && src.slots[at] >= 0 && (best < 0 || src.scores[at] > bestScore)) {
              best = p;
              bestScore = src.scores[at];
            }
          }
          if (best < 0) {
            break;
          }
          Head src = parts.get(best).perHead[h];
          int srcSlot = src.slots[q * k + cursor[best]];
          cursor[best]++;
          long key = ((long) best << 32) | srcSlot;
          Integer slot = copied.get(key);
          if (slot == null) {
            slot = target.addPair(src.keys, srcSlot * headDim, src.values, srcSlot * headDim, headDim,
                docMap[best][src.pairDocument[srcSlot]], src.pairPosition[srcSlot]);
            copied.put(key, slot);
          }
          target.scores[q * k + r] = bestScore;
          target.slots[q * k + r] = slot;
        }
      }
    }
    return out;
  }
}
