package io.longmem.memory.service;

import java.util.HashSet;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The bounds of a request's numbers, from the node's configuration: every numeric field of a
 * search or a session is checked against them before any work, since the node sizes its arrays
 * (and FAISS its own, inside OpenMP loops where a failure aborts the process) by them. 0 keeps
 * meaning "the default" where the proto says so (nprobe, ef_search, refine).
 */
record RequestLimits(int maxK, int maxQueries, int maxHeads, int maxHeadDim, int maxLayerIndex,
    int maxSessionLayers, int maxNprobe, int maxEfSearch, int maxRefine, long maxMessageBytes) {
  /** At most this many collections or sessions in one search (each is searched once). */
  static final int MAX_NAMES = 256;
  private static final Pattern NLIST = Pattern.compile("IVF(\\d+)");

  static RequestLimits of(ServiceConfig c) {
    return new RequestLimits(c.maxK, c.maxQueries, c.maxHeads, c.maxHeadDim, c.maxLayerIndex, c.maxSessionLayers,
        c.maxNprobe, c.maxEfSearch, c.maxRefine, c.maxMessageBytes());
  }

  /** Checks every field of a search that needs no collection; the message names the field. */
  void check(SearchQuery q) {
    names("collections", q.collections());
    names("sessions", q.sessions());
    if (q.collections().isEmpty() && q.sessions().isEmpty()) {
      throw RequestException.invalid("collections/sessions: name at least one collection or session to search");
    }
    layer("layer", q.layer());
    shape(q.heads(), q.headDim());
    within("queries", q.queries(), 1, maxQueries);
    within("k", q.k(), 1, maxK);
    within("nprobe", q.nprobe(), 0, maxNprobe);
    within("ef_search", q.efSearch(), 0, maxEfSearch);
    within("refine", q.refine(), 0, maxRefine);
    q.validate(); // the query's floats
  }

  /** Checks a session's layers and shape before any index is built. */
  void checkSession(List<Integer> layers, int heads, int headDim) {
    if (layers.isEmpty()) {
      throw RequestException.invalid("layers: a session needs at least one layer");
    }
    if (layers.size() > maxSessionLayers) {
      throw RequestException.invalid("layers: " + layers.size() + " layers, a session has at most "
          + maxSessionLayers);
    }
    HashSet<Integer> seen = new HashSet<>();
    for (int l : layers) {
      layer("layers", l);
      if (!seen.add(l)) {
        throw RequestException.invalid("layers: layer " + l + " is named twice");
      }
    }
    shape(heads, headDim);
  }

  /** Checks nprobe against an IVF collection's nlist (read from its index factory). */
  static void checkIndex(String collection, String indexFactory, SearchQuery q) {
    if (q.nprobe() == 0 || indexFactory == null) {
      return;
    }
    Matcher m = NLIST.matcher(indexFactory);
    if (m.find()) {
      long nlist = Long.parseLong(m.group(1));
      if (q.nprobe() > nlist) {
        throw RequestException.invalid("nprobe: " + q.nprobe() + ", collection " + collection + " has " + nlist
            + " inverted lists (" + indexFactory + ")");
      }
    }
  }

  private void shape(int heads, int headDim) {
    within("heads", heads, 1, maxHeads);
    within("head_dim", headDim, 1, maxHeadDim);
  }

  private void layer(String field, int layer) {
    within(field, layer, 0, maxLayerIndex);
  }

  private static void names(String field, List<String> names) {
    if (names.size() > MAX_NAMES) {
      throw RequestException.invalid(field + ": " + names.size() + " names, at most " + MAX_NAMES);
    }
    HashSet<String> seen = new HashSet<>();
    for (String n : names) {
      if (!seen.add(n)) {
        throw RequestException.invalid(field + ": " + Shown.name(n) + " is named twice");
      }
    }
  }

  private static void within(String field, long value, long min, long max) {
    if (value < min || value > max) {
      throw RequestException.invalid(field + " must be in [" + min + ", " + max + "], got " + value);
    }
  }
}
