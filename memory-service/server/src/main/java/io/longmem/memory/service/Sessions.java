package io.longmem.memory.service;

import java.util.List;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The sessions a node holds between calls, within its limits: how many sessions, how many tokens
 * per session layer. Arguments are checked here, so a {@link Session} only ever sees valid ones.
 */
final class Sessions implements AutoCloseable {
  private final ConcurrentHashMap<String, Session> byId = new ConcurrentHashMap<>();
  private final int maxSessions;
  private final long maxTokens;

  Sessions(int maxSessions, long maxTokens) {
    this.maxSessions = maxSessions;
    this.maxTokens = maxTokens;
  }

  String create(List<Integer> layers, int heads, int headDim) {
    if (layers.isEmpty() || heads <= 0 || headDim <= 0) {
      throw RequestException.invalid("a session needs layers, and positive heads and head_dim");
    }
    if (byId.size() >= maxSessions) {
      throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "this node holds " + byId.size()
          + " sessions, its limit; drop some first");
    }
    String id = "session-" + UUID.randomUUID();
    byId.put(id, new Session(id, layers, heads, headDim, maxTokens));
    return id;
  }

  /** keys/values [heads, n, head_dim]; positions [n], or empty or null for 0.. */
  long append(String id, int layer, int n, float[] keys, float[] values, int[] positions) {
    Session s = get(id);
    if (n <= 0) {
      throw RequestException.invalid("tokens must be positive, got " + n);
    }
    long expected = (long) s.heads() * n * s.headDim();
    if (keys.length != expected || values.length != expected) {
      throw RequestException.invalid("keys/values: " + keys.length + "/" + values.length + " floats, heads x tokens x "
          + "head_dim = " + expected);
    }
    if (positions != null && positions.length != 0 && positions.length != n) {
      throw RequestException.invalid("positions: " + positions.length + " for " + n + " tokens");
    }
    for (float[] a : new float[][] {keys, values}) {
      for (int i = 0; i < a.length; i++) {
        if (!Float.isFinite(a[i])) {
          throw RequestException.invalid((a == keys ? "keys" : "values") + ": element " + i + " is " + a[i]);
        }
      }
    }
    return s.append(layer, n, keys, values, positions == null || positions.length == 0 ? null : positions);
  }

  void drop(String id) {
    Session s = byId.remove(id);
    if (s == null) {
      throw RequestException.notFound("unknown session " + id);
    }
    s.close();
  }

  Session get(String id) {
    Session s = byId.get(id);
    if (s == null) {
      throw RequestException.notFound("unknown session " + id);
    }
    return s;
  }

  @Override
  public void close() {
    byId.values().forEach(Session::close);
    byId.clear();
  }
}
