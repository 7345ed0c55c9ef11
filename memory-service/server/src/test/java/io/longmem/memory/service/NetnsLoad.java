package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;

import io.grpc.StatusRuntimeException;
import io.longmem.memory.api.BearerToken;
import io.longmem.memory.api.ClientSecurity;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.grpc.SearchResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The client of {@link NetnsClusterTest} as its own process (in its own network namespace):
 * {@code NetnsLoad URI PER_SECOND DEADLINE_MS SCRATCH} sends searches at a fixed rate until its
 * stdin closes, checks every answer against brute force and prints one line per search:
 * {@code R SENT_EPOCH_MS LATENCY_MS OK|FAIL|WRONG [why]}.
 */
public final class NetnsLoad {
  private NetnsLoad() {}

  public static void main(String[] args) throws Exception {
    String uri = args[0];
    int perSecond = Integer.parseInt(args[1]);
    long deadlineMs = Long.parseLong(args[2]);
    TestBooks books = TestBooks.write(Path.of(args[3])); // the same seeded data as the nodes serve
    ExecutorService callers = Executors.newFixedThreadPool(64);
    ScheduledExecutorService tick = Executors.newSingleThreadScheduledExecutor();
    AtomicLong seq = new AtomicLong();
    ClientSecurity security = ClientSecurity.of(Path.of(args[4]), null, null,
        BearerToken.of(Files.readString(Path.of(args[5])).trim(), "the load's token"));
    try (MemoryEndpoint e = MemoryEndpoint.remote(uri, security)) {
      tick.scheduleAtFixedRate(() -> callers.execute(() -> {
        long n = seq.incrementAndGet();
        float[] q = randomQuery(1, 10_000 + n);
        long sent = System.currentTimeMillis();
        long t0 = System.nanoTime();
        String outcome;
        try {
          SearchResponse r = e.stub().withDeadlineAfter(deadlineMs, TimeUnit.MILLISECONDS)
              .search(request(q, 1, 6).build());
          try {
            books.assertExact(r, q, 1, 6, allDocs());
            outcome = "OK";
          } catch (AssertionError wrong) {
            outcome = "WRONG " + wrong.getMessage().replace('\n', ' ');
          }
        } catch (StatusRuntimeException failed) {
          outcome = "FAIL " + failed.getStatus().getCode() + " " + failed.getStatus().getDescription();
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        synchronized (System.out) {
          System.out.println("R " + sent + " " + ms + " " + outcome.replace('\n', ' '));
          System.out.flush();
        }
      }), 0, 1_000_000 / perSecond, TimeUnit.MICROSECONDS);
      System.out.println("STARTED");
      System.out.flush();
      while (System.in.read() >= 0) {
        // runs until the test closes stdin
      }
      tick.shutdownNow();
      callers.shutdown();
      callers.awaitTermination(deadlineMs + 1000, TimeUnit.MILLISECONDS);
    }
    System.out.flush();
    System.exit(0);
  }
}
