package io.longmem.model.memory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One head's memory of one layer and batch row: its keys (unrotated, as the service stores them)
 * and values in fixed-size chunks (growing never copies), and the search for a query's top-k keys
 * by inner product, the attention score.
 *
 * <p>{@link Search#IVF} is an inverted file built as the memory grows: each appended block (a
 * window's keys) is split by a few k-means rounds into lists of about {@link #LIST} keys, whose
 * centroids are never retrained, and those lists into groups of about {@link #GROUP}. A query scores
 * every group (one float per GROUP x LIST keys), the lists of the best groups, and scans the best
 * lists exactly, about {@link #PROBE_FACTOR} x k keys: its cost grows with the memory only through
 * the groups, where a scan ({@link Search#EXACT}) grows with every key.
 * Not thread-safe: one writer, and searches only between appends.
 */
final class HeadIndex {
  /** How the top-k keys are found. */
  enum Search { EXACT, IVF }

  /** Keys per inverted list (a 2048-token window makes 32 per head). */
  static final int LIST = 64;
  /** Keys scanned exactly per query: this many times k (at least {@link #MIN_PROBE}). */
  static final int PROBE_FACTOR = 16;
  static final int MIN_PROBE = 1024;
  /** Lists per group of the coarse level. */
  static final int GROUP = 8;
  /** Groups whose lists are scored: this many times the lists scanned. */
  static final int GROUP_PROBE = 4;
  private static final int KMEANS_ROUNDS = 5;
  private static final int CHUNK = 4096; // vectors per chunk

  private final int dim;
  private final Search search;
  private final List<float[]> keys = new ArrayList<>();
  private final List<float[]> values = new ArrayList<>();
  private int size;
  /**
   * IVF: the centroids transposed, [dim][capacity] (scoring them all is then one multiply-add
   * loop per dimension over contiguous floats, which the JIT vectorizes), and each list's keys.
   */
  private float[][] centroidsT;
  private final List<int[]> lists = new ArrayList<>();
  /** The coarse level: group centroids, transposed likewise, and each group's lists. */
  private float[][] groupsT;
  private final List<int[]> groups = new ArrayList<>();
  /**
   * IVF stores each block's pairs in list order, so that scanning a list reads contiguous memory
   * (scattered reads made a query slower as the memory outgrew the caches): the slot of each
   * token, in reading order. Null: slots are tokens (exact search).
   */
  private int[] slotOf;
  private int[] tokenAt;

  HeadIndex(int dim, Search search) {
    this.dim = dim;
    this.search = search;
    this.centroidsT = new float[dim][0];
    this.groupsT = new float[dim][0];
  }

  int size() {
    return size;
  }

  /**
   * Appends n pairs: key i from {@code k[kOff + i * kStride ..)} and its value likewise from
   * {@code v}; with IVF they become lists of their own.
   */
  void add(float[] k, int kOff, float[] v, int vOff, int stride, int n) {
    int first = size;
    for (int i = 0; i < n; i++) {
      if (size % CHUNK == 0) {
        keys.add(new float[CHUNK * dim]);
        values.add(new float[CHUNK * dim]);
      }
      int at = (size % CHUNK) * dim;
      System.arraycopy(k, kOff + i * stride, keys.get(size / CHUNK), at, dim);
      System.arraycopy(v, vOff + i * stride, values.get(size / CHUNK), at, dim);
      size++;
    }
    if (search == Search.IVF && n > 0) {
      cluster(first, n);
    }
  }

  /** Copies the key of the {@code t}-th token read into {@code out[off..)}. */
  void tokenKey(int t, float[] out, int off) {
    key(slotOf == null ? t : slotOf[t], out, off);
  }

  /** Copies the value of the {@code t}-th token read into {@code out[off..)}. */
  void tokenValue(int t, float[] out, int off) {
    value(slotOf == null ? t : slotOf[t], out, off);
  }

  /** The token (reading order) whose pair is in slot {@code i}. */
  int tokenAt(int i) {
    return tokenAt == null ? i : tokenAt[i];
  }

  /** Copies the key in slot {@code i} (what {@link #top} returns) into {@code out[off..)}. */
  void key(int i, float[] out, int off) {
    System.arraycopy(keys.get(i / CHUNK), (i % CHUNK) * dim, out, off, dim);
  }

  /** Copies the value in slot {@code i} into {@code out[off..)}. */
  void value(int i, float[] out, int off) {
    System.arraycopy(values.get(i / CHUNK), (i % CHUNK) * dim, out, off, dim);
  }

  private float dot(float[] q, int qOff, int i) {
    float[] chunk = keys.get(i / CHUNK);
    int base = (i % CHUNK) * dim;
    float s0 = 0f;
    float s1 = 0f;
    int d = 0;
    for (; d + 1 < dim; d += 2) {
      s0 += q[qOff + d] * chunk[base + d];
      s1 += q[qOff + d + 1] * chunk[base + d + 1];
    }
    if (d < dim) {
      s0 += q[qOff + d] * chunk[base + d];
    }
    return s0 + s1;
  }

  /**
   * Keys [first, first + n) into about n / LIST lists by k-means, appended to the IVF; the new
   * lists' centroids into groups of about GROUP by k-means again (the coarse level).
   */
  private void cluster(int first, int n) {
    float[] x = new float[n * dim];
    for (int i = 0; i < n; i++) {
      key(first + i, x, i * dim);
    }
    int c = Math.max(1, Math.round(n / (float) LIST));
    int[] assign = new int[n];
    float[] cent = kmeans(x, n, dim, c, assign);
    int[][] members = members(assign, c);
    int firstList = lists.size();
    float[] kept = new float[c * dim];
    for (int j = 0; j < c; j++) {
      if (members[j].length > 0) {
        for (int t = 0; t < members[j].length; t++) {
          members[j][t] += first;
        }
        System.arraycopy(cent, j * dim, kept, (lists.size() - firstList) * dim, dim);
        lists.add(members[j]);
      }
    }
    int made = lists.size() - firstList;
    centroidsT = append(centroidsT, kept, made);
    inListOrder(first, n, x, firstList);
    int g = Math.max(1, Math.round(made / (float) GROUP));
    int[] groupOf = new int[made];
    float[] groupCent = kmeans(kept, made, dim, g, groupOf);
    int[][] groupMembers = members(groupOf, g);
    float[] keptGroups = new float[g * dim];
    int firstGroup = groups.size();
    for (int j = 0; j < g; j++) {
      if (groupMembers[j].length > 0) {
        for (int t = 0; t < groupMembers[j].length; t++) {
          groupMembers[j][t] += firstList;
        }
        System.arraycopy(groupCent, j * dim, keptGroups, (groups.size() - firstGroup) * dim, dim);
        groups.add(groupMembers[j]);
      }
    }
    groupsT = append(groupsT, keptGroups, groups.size() - firstGroup);
  }

  /** Rewrites block [first, first + n) (keys {@code x}) in the order of its lists, from list firstList on. */
  private void inListOrder(int first, int n, float[] x, int firstList) {
    float[] v = new float[n * dim];
    for (int i = 0; i < n; i++) {
      value(first + i, v, i * dim);
    }
    if (slotOf == null) {
      slotOf = new int[Math.max(1024, first + n)];
      tokenAt = new int[slotOf.length];
      for (int t = 0; t < first; t++) {
        slotOf[t] = t;
        tokenAt[t] = t;
      }
    } else if (slotOf.length < first + n) {
      slotOf = Arrays.copyOf(slotOf, Math.max(first + n, slotOf.length * 3 / 2));
      tokenAt = Arrays.copyOf(tokenAt, slotOf.length);
    }
    int slot = first;
    for (int l = firstList; l < lists.size(); l++) {
      int[] members = lists.get(l);
      for (int m = 0; m < members.length; m++) {
        int i = members[m] - first;
        System.arraycopy(x, i * dim, keys.get(slot / CHUNK), (slot % CHUNK) * dim, dim);
        System.arraycopy(v, i * dim, values.get(slot / CHUNK), (slot % CHUNK) * dim, dim);
        slotOf[first + i] = slot;
        tokenAt[slot] = first + i;
        members[m] = slot++;
      }
    }
  }

  /** Appends m vectors [m, dim] as columns of a transposed, growable [dim][capacity] matrix. */
  private float[][] append(float[][] t, float[] vectors, int m) {
    int used = t == centroidsT ? lists.size() - m : groups.size() - m;
    if (t[0].length < used + m) {
      int capacity = Math.max(used + m, t[0].length * 3 / 2);
      for (int d = 0; d < dim; d++) {
        t[d] = Arrays.copyOf(t[d], capacity);
      }
    }
    for (int j = 0; j < m; j++) {
      for (int d = 0; d < dim; d++) {
        t[d][used + j] = vectors[j * dim + d];
      }
    }
    return t;
  }

  /** Indices by cluster. */
  private static int[][] members(int[] assign, int c) {
    int[] count = new int[c];
    for (int a : assign) {
      count[a]++;
    }
    int[][] m = new int[c][];
    for (int j = 0; j < c; j++) {
      m[j] = new int[count[j]];
    }
    int[] fill = new int[c];
    for (int i = 0; i < assign.length; i++) {
      m[assign[i]][fill[assign[i]]++] = i;
    }
    return m;
  }

  /** k-means (squared L2) of n points [n, dim] into c centroids (returned); {@code assign} gets each point's. */
  private static float[] kmeans(float[] x, int n, int dim, int c, int[] assign) {
    float[] cent = new float[c * dim];
    for (int j = 0; j < c; j++) {
      System.arraycopy(x, (int) ((long) j * n / c) * dim, cent, j * dim, dim);
    }
    for (int round = 0; round <= KMEANS_ROUNDS; round++) {
      float[] half = new float[c]; // |c|^2 / 2: argmin |x - c|^2 = argmax x.c - |c|^2 / 2
      for (int j = 0; j < c; j++) {
        float s = 0f;
        for (int d = 0; d < dim; d++) {
          s += cent[j * dim + d] * cent[j * dim + d];
        }
        half[j] = s / 2;
      }
      for (int i = 0; i < n; i++) {
        int best = 0;
        float bestScore = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < c; j++) {
          float sc = -half[j];
          for (int d = 0; d < dim; d++) {
            sc += x[i * dim + d] * cent[j * dim + d];
          }
          if (sc > bestScore) {
            bestScore = sc;
            best = j;
          }
        }
        assign[i] = best;
      }
      if (round == KMEANS_ROUNDS) {
        break;
      }
      float[] sum = new float[c * dim];
      int[] count = new int[c];
      for (int i = 0; i < n; i++) {
        count[assign[i]]++;
        for (int d = 0; d < dim; d++) {
          sum[assign[i] * dim + d] += x[i * dim + d];
        }
      }
      for (int j = 0; j < c; j++) {
        if (count[j] > 0) { // an empty cluster keeps its centroid
          for (int d = 0; d < dim; d++) {
            cent[j * dim + d] = sum[j * dim + d] / count[j];
          }
        }
      }
    }
    return cent;
  }

  /**
   * The pairs with the {@code k} largest q·key, at most {@code k} (all of them when there are no
   * more than k: then the answer is exact whatever the search).
   *
   * @param q the query at {@code q[off..off+dim)}
   */
  int[] top(float[] q, int off, int k) {
    if (size <= k) {
      int[] all = new int[size];
      for (int i = 0; i < size; i++) {
        all[i] = i;
      }
      return all;
    }
    float[] query = Arrays.copyOfRange(q, off, off + dim);
    return search == Search.IVF ? ivf(query, k) : exact(query, k);
  }

  /**
   * Scores the group centroids, then the list centroids of the best groups, then scans the best
   * lists: about PROBE_FACTOR x k keys. Only the first step grows with the memory, by one
   * centroid per GROUP x LIST keys.
   */
  private int[] ivf(float[] query, int k) {
    int want = Math.max(MIN_PROBE, PROBE_FACTOR * k);
    int probe = Math.min(lists.size(), Math.max(1, (want + LIST - 1) / LIST));
    int[] bestGroups = topOf(scores(query, groupsT, groups.size()), Math.min(groups.size(), GROUP_PROBE * probe));
    int candidates = 0;
    for (int gi : bestGroups) {
      candidates += groups.get(gi).length;
    }
    int[] listIds = new int[candidates];
    float[] listScores = new float[candidates];
    int at = 0;
    for (int gi : bestGroups) {
      for (int l : groups.get(gi)) {
        float s = 0f;
        for (int d = 0; d < dim; d++) {
          s += query[d] * centroidsT[d][l];
        }
        listIds[at] = l;
        listScores[at++] = s;
      }
    }
    int[] best = topOf(listScores, Math.min(candidates, probe));
    Heap heap = new Heap(k);
    for (int b : best) {
      for (int i : lists.get(listIds[b])) {
        heap.offer(dot(query, 0, i), i);
      }
    }
    return heap.indices();
  }

  /** q . column j of a transposed [dim][>= n] matrix, for j < n. */
  private float[] scores(float[] query, float[][] t, int n) {
    float[] cs = new float[n];
    for (int d = 0; d < dim; d++) {
      float qd = query[d];
      float[] row = t[d];
      for (int j = 0; j < n; j++) {
        cs[j] += qd * row[j];
      }
    }
    return cs;
  }

  /** The indices of the m largest scores (any order). */
  private static int[] topOf(float[] scores, int m) {
    Heap heap = new Heap(m);
    for (int j = 0; j < scores.length; j++) {
      heap.offer(scores[j], j);
    }
    return heap.indices();
  }

  /** A linear scan keeping the k best. */
  private int[] exact(float[] query, int k) {
    Heap heap = new Heap(k);
    for (int i = 0; i < size; i++) {
      heap.offer(dot(query, 0, i), i);
    }
    return heap.indices();
  }

  /** A min-heap of (score, index) holding the k largest offered. */
  private static final class Heap {
    final float[] score;
    final int[] index;
    int n;

    Heap(int k) {
      score = new float[k];
      index = new int[k];
    }

    void offer(float s, int i) {
      if (n < score.length) {
        score[n] = s;
        index[n] = i;
        siftUp(score, index, n++);
      } else if (s > score[0]) {
        score[0] = s;
        index[0] = i;
        siftDown(score, index, n);
      }
    }

    int[] indices() {
      return Arrays.copyOf(index, n);
    }
  }

  private static void siftUp(float[] s, int[] ix, int i) {
    while (i > 0) {
      int p = (i - 1) / 2;
      if (s[p] <= s[i]) {
        return;
      }
      swap(s, ix, p, i);
      i = p;
    }
  }

  private static void siftDown(float[] s, int[] ix, int n) {
    int i = 0;
    while (true) {
      int l = 2 * i + 1;
      int r = l + 1;
      int m = i;
      if (l < n && s[l] < s[m]) {
        m = l;
      }
      if (r < n && s[r] < s[m]) {
        m = r;
      }
      if (m == i) {
        return;
      }
      swap(s, ix, m, i);
      i = m;
    }
  }

  private static void swap(float[] s, int[] ix, int a, int b) {
    float t = s[a];
    s[a] = s[b];
    s[b] = t;
    int u = ix[a];
    ix[a] = ix[b];
    ix[b] = u;
  }

}
