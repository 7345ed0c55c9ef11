package io.longmem.memory.service;

import io.longmem.memory.api.MemoryBlock;
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

  /**
   * Appends a block to a session: its shape must be the session's and its numbers finite.
   *
   * @param positioned whether the block's positions are its tokens' own, or count on from the
   *     session layer's tokens (see {@link Session#append(MemoryBlock, boolean)})
   * @return tokens now in the block's layer
   */
  long append(String id, MemoryBlock block, boolean positioned) {
    Session s = get(id);
    int n = block.tokens();
    if (n <= 0) {
      throw RequestException.invalid("tokens must be positive, got " + n);
    }
    if (block.heads() != s.heads() || block.headDim() != s.headDim()) {
      long expected = (long) s.heads() * n * s.headDim();
      throw RequestException.invalid("keys/values: " + block.keys().length + "/" + block.values().length
          + " floats, heads x tokens x head_dim = " + expected);
    }
    float[] keys = block.keys();
    float[] values = block.values();
    for (float[] a : new float[][] {keys, values}) {
      for (int i = 0; i < a.length; i++) {
        if (!Float.isFinite(a[i])) {
          throw RequestException.invalid((a == keys ? "keys" : "values") + ": element " + i + " is " + a[i]);
        }
      }
    }
    return s.append(block, positioned);
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
