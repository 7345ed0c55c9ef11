package io.longmem.memory.service;

import io.longmem.memory.api.MemoryBlock;
import java.util.List;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The sessions a node holds between calls, within its limits: how many sessions, how many tokens
 * per session layer, how many bytes per session and for all of them, and how long one may stay
 * unused (abandoned sessions are dropped by a background sweep, so they cannot lock other clients
 * out). Arguments are checked here, so a {@link Session} only ever sees valid ones.
 */
final class Sessions implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Sessions.class);

  /**
   * @param maxSessionBytes what one session may hold (keys, values, positions, indexes)
   * @param maxTotalBytes what all sessions together may hold
   * @param idleMs a session unused for this long is dropped; 0: never
   */
  record Limits(int maxSessions, long maxTokens, long maxSessionBytes, long maxTotalBytes, long idleMs) {
    static Limits of(ServiceConfig c) {
      return new Limits(c.maxSessions, c.maxSessionTokens,
          c.maxSessionMb > 0 ? c.maxSessionMb << 20 : c.sessionsTotalBytes(), c.sessionsTotalBytes(),
          c.sessionIdleMs);
    }
  }

  /** A session and the name of the caller that created it (the only one that may use it). */
  private record Held(String owner, Session session) {}

  /** 192 random bits per handle: not guessable, so a handle names one caller's session. */
  static final int HANDLE_BYTES = 24;
  private static final SecureRandom RANDOM = new SecureRandom();
  private final ConcurrentHashMap<String, Held> byId = new ConcurrentHashMap<>();
  private final Limits limits;
  private final RequestLimits shapes;
  private final ByteBudget total;
  private final ScheduledExecutorService sweeper;

  /** Sessions limited by count and tokens only (no byte limits, no expiry, the default shapes). */
  Sessions(int maxSessions, long maxTokens) {
    this(new Limits(maxSessions, maxTokens, Long.MAX_VALUE, Long.MAX_VALUE, 0), RequestLimits.of(new ServiceConfig()));
  }

  Sessions(Limits limits, RequestLimits shapes) {
    this.limits = limits;
    this.shapes = shapes;
    this.total = new ByteBudget("sessions", limits.maxTotalBytes());
    if (limits.idleMs() > 0) {
      sweeper = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "memory-session-sweep");
        t.setDaemon(true);
        return t;
      });
      long every = Math.max(10, Math.min(limits.idleMs() / 4, 60_000));
      sweeper.scheduleWithFixedDelay(() -> {
        try {
          expire();
        } catch (RuntimeException e) { // a failed sweep must not end the sweeping
          LOG.error("session sweep failed", e);
        }
      }, every, every, TimeUnit.MILLISECONDS);
    } else {
      sweeper = null;
    }
  }

  /** A new session owned by {@code owner}; its handle is 192 random bits, base64url. */
  String create(String owner, List<Integer> layers, int heads, int headDim) {
    shapes.checkSession(layers, heads, headDim);
    synchronized (this) { // the count is checked and the session added at once
      if (byId.size() >= limits.maxSessions()) {
        expire();
      }
      if (byId.size() >= limits.maxSessions()) {
        throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "this node holds " + byId.size()
            + " sessions, its limit; drop some first (unused ones are dropped after "
            + (limits.idleMs() > 0 ? limits.idleMs() + " ms" : "never") + ")");
      }
      String id;
      do {
        byte[] b = new byte[HANDLE_BYTES];
        RANDOM.nextBytes(b);
        id = Base64.getUrlEncoder().withoutPadding().encodeToString(b);
      } while (byId.containsKey(id));
      byId.put(id, new Held(owner, new Session(id, layers, heads, headDim, limits.maxTokens(),
          limits.maxSessionBytes(), total)));
      return id;
    }
  }

  /**
   * Appends a block to a session: its shape must be the session's and its numbers finite.
   *
   * @param positioned whether the block's positions are its tokens' own, or count on from the
   *     session layer's tokens (see {@link Session#append(MemoryBlock, boolean)})
   * @return tokens now in the block's layer
   */
  long append(String id, String owner, MemoryBlock block, boolean positioned) {
    Session s = get(id, owner);
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

  void drop(String id, String owner) {
    Held h = byId.get(id);
    if (h == null || !h.owner().equals(owner) || !byId.remove(id, h)) {
      throw unknown(id);
    }
    h.session().close();
  }

  /**
   * The session of that handle if {@code owner} created it; NOT_FOUND otherwise, the same answer
   * as for a handle never made (another caller learns nothing of it).
   */
  Session get(String id, String owner) {
    Held h = byId.get(id);
    if (h == null || !h.owner().equals(owner)) {
      throw unknown(id);
    }
    return h.session();
  }

  /** How many sessions the node holds. */
  int count() {
    return byId.size();
  }

  /** What all sessions hold, in bytes. */
  long bytes() {
    return total.used();
  }

  private RequestException unknown(String id) {
    return RequestException.notFound("unknown session " + Shown.name(id) + " (never created, dropped, or unused for "
        + (limits.idleMs() > 0 ? "more than " + limits.idleMs() + " ms" : "ever") + ")");
  }

  /** Drops the sessions unused for longer than the idle limit. */
  void expire() {
    if (limits.idleMs() <= 0) {
      return;
    }
    long now = System.nanoTime();
    for (Held h : byId.values()) {
      Session s = h.session();
      long idle = (now - s.lastUsed) / 1_000_000L;
      if (idle > limits.idleMs() && byId.remove(s.id(), h)) {
        LOG.info("session {}... of '{}' dropped: unused for {} ms", s.id().substring(0, Math.min(6, s.id().length())),
            h.owner(), idle);
        s.close();
      }
    }
  }

  @Override
  public void close() {
    if (sweeper != null) {
      sweeper.shutdownNow();
    }
    byId.values().forEach(h -> h.session().close());
    byId.clear();
  }
}
