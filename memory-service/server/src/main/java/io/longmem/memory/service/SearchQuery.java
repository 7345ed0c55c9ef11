package io.longmem.memory.service;

import java.util.List;

/**
 * One search, as plain Java: for each head and query the top-k pairs of some collections and
 * sessions of one layer. {@link #validate} checks everything that does not need the data.
 *
 * @param query float32 [heads, queries, headDim]
 */
public record SearchQuery(List<String> collections, List<String> sessions, int layer, int heads, int queries,
    int headDim, float[] query, int k, List<String> documents, int nprobe, int efSearch, int refine) {

  public SearchQuery {
    collections = List.copyOf(collections);
    sessions = List.copyOf(sessions);
    documents = List.copyOf(documents);
  }

  /** The queries of one head, [queries, headDim]. */
  public float[] head(int h) {
    int n = queries * headDim;
    float[] out = new float[n];
    System.arraycopy(query, h * n, out, 0, n);
    return out;
  }

  /** Refuses an answer larger than the limit (pairs are deduplicated per head, so this is known late). */
  static void checkSize(Hits hits, long maxResponseBytes) {
    long bytes = 0;
    for (int h = 0; h < hits.heads; h++) {
      bytes += (long) hits.head(h).pairs * (2L * hits.headDim * 4 + 8) + (long) hits.queries * hits.k * 8;
    }
    if (bytes > maxResponseBytes) {
      throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "the answer holds " + bytes
          + " bytes, more than the limit of " + maxResponseBytes + ": ask for fewer queries or a smaller k");
    }
  }

  /**
   * Checks the query's floats: heads x queries x head_dim of them, all finite ({@link
   * RequestLimits#check} has checked the numbers themselves).
   */
  void validate() {
    long expected = (long) heads * queries * headDim;
    if (query == null || query.length != expected) {
      throw RequestException.invalid("query: " + (query == null ? 0 : query.length) + " floats, heads x queries x "
          + "head_dim = " + expected);
    }
    for (int i = 0; i < query.length; i++) {
      if (!Float.isFinite(query[i])) {
        int perHead = queries * headDim;
        throw RequestException.invalid("query: " + query[i] + " at head " + i / perHead + ", query "
            + (i % perHead) / headDim + ", component " + i % headDim + " is not finite");
      }
    }
  }
}
