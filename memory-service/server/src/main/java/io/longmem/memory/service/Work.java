package io.longmem.memory.service;

import io.grpc.Context;
import io.grpc.Deadline;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One search's work on the node's pool, stopped when its caller goes: the gRPC call was cancelled
 * or its deadline passed. The tasks of a search {@link #check} between heads and shards, so a
 * search nobody waits for any more stops at the next step instead of computing to the end. The
 * pool's threads do not carry the caller's {@link Context}: it is captured here when the search is
 * admitted.
 */
final class Work implements Executor {
  /** Steps (a head or a shard) that passed {@link #check} and ran, all searches together: tests read it. */
  static final AtomicLong STEPS = new AtomicLong();
  private final Executor pool;
  private final Context context;

  private Work(Executor pool, Context context) {
    this.pool = pool;
    this.context = context;
  }

  /** The work of a search of the calling thread's context (ROOT outside a call: never cancelled). */
  static Work of(Executor pool) {
    return new Work(pool, Context.current());
  }

  /** The caller's context: calls to other nodes run in children of it, cancelled with it. */
  Context context() {
    return context;
  }

  @Override
  public void execute(Runnable task) {
    pool.execute(task);
  }

  /** Throws CANCELLED or DEADLINE_EXCEEDED once the caller is gone. */
  void check() {
    if (context.isCancelled()) {
      Deadline d = context.getDeadline();
      if (d != null && d.isExpired()) {
        throw new RequestException(RequestException.Kind.DEADLINE_EXCEEDED, "the search's deadline passed: stopped");
      }
      throw new RequestException(RequestException.Kind.CANCELLED, "the search was cancelled: stopped");
    }
    STEPS.incrementAndGet();
  }

  /** {@link #check} where the executor is a search's work (sources also run on plain executors in tests). */
  static void check(Executor e) {
    if (e instanceof Work w) {
      w.check();
    } else {
      STEPS.incrementAndGet();
    }
  }
}
