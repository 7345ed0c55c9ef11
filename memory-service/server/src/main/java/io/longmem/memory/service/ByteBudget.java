package io.longmem.memory.service;

import java.util.function.Supplier;

/**
 * Bytes held against a limit by many callers at once: what all sessions keep, what the searches
 * in flight hold. Charging before allocating is what keeps a node's heap from being exhausted by
 * requests that are each within their own limits.
 */
final class ByteBudget {
  private final String what;
  private final long limit;
  private long used;

  /** @param what what is held, for messages ("sessions", "searches in flight") */
  ByteBudget(String what, long limit) {
    this.what = what;
    this.limit = limit;
  }

  /** A budget that never refuses (for tests and callers without a node). */
  static ByteBudget unlimited(String what) {
    return new ByteBudget(what, Long.MAX_VALUE);
  }

  long limit() {
    return limit;
  }

  synchronized long used() {
    return used;
  }

  /**
   * Takes n bytes now or refuses (RESOURCE_EXHAUSTED, with {@code forWhat} saying who asked).
   */
  synchronized void take(long n, Supplier<String> forWhat) {
    if (n > limit - used) {
      throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, forWhat.get() + " needs " + n
          + " bytes, but " + what + " on this node hold " + used + " of their " + limit + ": try again later");
    }
    used += n;
  }

  /**
   * Takes n bytes (at most the whole limit: a larger taker waits to run alone), waiting up to
   * {@code waitMs} for others to give theirs back; {@code stillWanted} is checked while waiting
   * (it throws when the caller is gone).
   *
   * @return the bytes taken: give exactly these back
   */
  synchronized long await(long n, long waitMs, Runnable stillWanted, Supplier<String> forWhat) {
    long want = Math.min(n, limit);
    long until = System.nanoTime() + waitMs * 1_000_000L;
    while (want > limit - used) {
      long left = until - System.nanoTime();
      if (left <= 0) {
        throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, forWhat.get() + " needs " + want
            + " bytes, but " + what + " hold " + used + " of their " + limit + " on this node (waited " + waitMs
            + " ms): try again later or ask for less");
      }
      try {
        wait(Math.max(1, Math.min(50, left / 1_000_000L)));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new RequestException(RequestException.Kind.UNAVAILABLE, "interrupted");
      }
      stillWanted.run();
    }
    used += want;
    return want;
  }

  synchronized void give(long n) {
    used -= n;
    notifyAll();
  }
}
