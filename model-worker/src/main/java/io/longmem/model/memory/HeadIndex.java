package io.longmem.model.memory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.lucene.codecs.hnsw.DefaultFlatVectorScorer;
import org.apache.lucene.index.VectorSimilarityFunction;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.search.TopDocs;
import org.apache.lucene.util.hnsw.HnswGraphBuilder;
import org.apache.lucene.util.hnsw.HnswGraphSearcher;
import org.apache.lucene.util.hnsw.OnHeapHnswGraph;
import org.apache.lucene.util.hnsw.RandomAccessVectorValues;
import org.apache.lucene.util.hnsw.RandomVectorScorer;

/**
 * One head's memory of one layer and batch row: its keys (unrotated, as the service stores them)
 * and values in fixed-size chunks (growing never copies), and the search for a query's top-k keys
 * by inner product, the attention score. {@link Search#HNSW} keeps a Lucene HNSW graph that grows
 * with the keys, so a search costs about log(n) instead of n; {@link Search#EXACT} scans.
 * Not thread-safe: one writer, and searches only between appends.
 */
final class HeadIndex {
  /** How the top-k keys are found. */
  enum Search { EXACT, HNSW }

  /** HNSW links per node and construction beam: Lucene's defaults are 16 and 100. */
  static final int MAX_CONN = 16;
  static final int BEAM_WIDTH = 64;
  private static final int CHUNK = 4096; // vectors per chunk

  private final int dim;
  private final Search search;
  private final List<float[]> keys = new ArrayList<>();
  private final List<float[]> values = new ArrayList<>();
  private int size;
  private final HnswGraphBuilder graph;

  HeadIndex(int dim, Search search, long seed) {
    this.dim = dim;
    this.search = search;
    try {
      this.graph = search == Search.HNSW ? HnswGraphBuilder.create(
          DefaultFlatVectorScorer.INSTANCE.getRandomVectorScorerSupplier(VectorSimilarityFunction.MAXIMUM_INNER_PRODUCT,
              new View()), MAX_CONN, BEAM_WIDTH, seed) : null;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  int size() {
    return size;
  }

  /** Appends one pair from {@code k[kOff..kOff+dim)} and {@code v[vOff..)}. */
  void add(float[] k, int kOff, float[] v, int vOff) {
    if (size % CHUNK == 0) {
      keys.add(new float[CHUNK * dim]);
      values.add(new float[CHUNK * dim]);
    }
    int at = (size % CHUNK) * dim;
    System.arraycopy(k, kOff, keys.get(size / CHUNK), at, dim);
    System.arraycopy(v, vOff, values.get(size / CHUNK), at, dim);
    size++;
    if (graph != null) {
      try {
        graph.addGraphNode(size - 1);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  /** Copies pair {@code i}'s key into {@code out[off..)}. */
  void key(int i, float[] out, int off) {
    System.arraycopy(keys.get(i / CHUNK), (i % CHUNK) * dim, out, off, dim);
  }

  /** Copies pair {@code i}'s value into {@code out[off..)}. */
  void value(int i, float[] out, int off) {
    System.arraycopy(values.get(i / CHUNK), (i % CHUNK) * dim, out, off, dim);
  }

  /**
   * The pairs with the {@code k} largest q·key, at most {@code k} (all of them when there are no
   * more than k: then the answer is exact whatever the search).
   *
   * @param q the query at {@code q[off..off+dim)}
   * @param ef HNSW beam: candidates kept while searching (>= k)
   */
  int[] top(float[] q, int off, int k, int ef) {
    if (size <= k) {
      int[] all = new int[size];
      for (int i = 0; i < size; i++) {
        all[i] = i;
      }
      return all;
    }
    float[] query = new float[dim];
    System.arraycopy(q, off, query, 0, dim);
    return search == Search.HNSW ? hnsw(query, k, Math.max(k, ef)) : exact(query, k);
  }

  private int[] hnsw(float[] query, int k, int ef) {
    try {
      RandomVectorScorer scorer = DefaultFlatVectorScorer.INSTANCE.getRandomVectorScorer(
          VectorSimilarityFunction.MAXIMUM_INNER_PRODUCT, new View(), query);
      OnHeapHnswGraph g = graph.getGraph();
      TopDocs found = HnswGraphSearcher.search(scorer, ef, g, null, Integer.MAX_VALUE).topDocs();
      ScoreDoc[] docs = found.scoreDocs; // best first
      int[] out = new int[Math.min(k, docs.length)];
      for (int i = 0; i < out.length; i++) {
        out[i] = docs[i].doc;
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A linear scan keeping the k best in a min-heap of (score, index). */
  private int[] exact(float[] query, int k) {
    float[] heapScore = new float[k];
    int[] heapIndex = new int[k];
    int n = 0;
    for (int i = 0; i < size; i++) {
      float[] chunk = keys.get(i / CHUNK);
      int base = (i % CHUNK) * dim;
      float s = 0f;
      for (int d = 0; d < dim; d++) {
        s += query[d] * chunk[base + d];
      }
      if (n < k) {
        heapScore[n] = s;
        heapIndex[n] = i;
        siftUp(heapScore, heapIndex, n++);
      } else if (s > heapScore[0]) {
        heapScore[0] = s;
        heapIndex[0] = i;
        siftDown(heapScore, heapIndex, k);
      }
    }
    return java.util.Arrays.copyOf(heapIndex, n);
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

  /**
   * The keys as Lucene reads them: a view with its own buffer (Lucene may keep two views' vectors
   * at once, hence {@link #copy}); its size follows the keys as they grow.
   */
  private final class View implements RandomAccessVectorValues.Floats {
    private final float[] buffer = new float[dim];

    @Override
    public int size() {
      return size;
    }

    @Override
    public int dimension() {
      return dim;
    }

    @Override
    public float[] vectorValue(int ord) {
      key(ord, buffer, 0);
      return buffer;
    }

    @Override
    public View copy() {
      return new View();
    }
  }
}
