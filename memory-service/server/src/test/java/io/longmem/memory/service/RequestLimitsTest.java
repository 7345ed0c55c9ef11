package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real node on loopback over real collections (Flat, HNSW, IVF-PQ) against requests past the
 * node's limits: every numeric field is bounded before any work, an answer too large is refused by
 * its worst case before the search, searches in flight are bounded by bytes, a cancelled search
 * stops, and status messages are bounded and show no server paths. After each refusal the node
 * still answers a good query exactly.
 */
class RequestLimitsTest {
  static final int HEADS = TestBooks.HEADS;
  static final int DIM = TestBooks.DIM;

  @TempDir
  static Path tmp;
  static TestBooks books;
  static MemoryServer server;
  static MemoryGrpc.MemoryBlockingStub client;
  static final List<ManagedChannel> OPEN = new ArrayList<>();

  @BeforeAll
  static void start() throws Exception {
    books = TestBooks.write(tmp.resolve("books"));
    books.writeAs(tmp.resolve("hnsw"), "HNSW32");
    books.writeAs(tmp.resolve("ivf"), "IVF4,PQ4");
    Path broken = Files.createDirectories(tmp.resolve("broken"));
    Files.writeString(broken.resolve("manifest.json"), "{ not json");
    ServiceConfig c = books.config("local", null);
    c.collections = Map.of("books", tmp.resolve("books").toString(), "hnsw", tmp.resolve("hnsw").toString(),
        "ivf", tmp.resolve("ivf").toString(), "broken", broken.toString());
    c.maxQueries = 256;
    server = MemoryServer.start(c);
    client = TestBooks.client(server, OPEN);
  }

  @AfterAll
  static void stop() {
    OPEN.forEach(ManagedChannel::shutdownNow);
    server.close();
  }

  /** A stub whose deadline starts now (the class's calls take longer than one deadline). */
  static MemoryGrpc.MemoryBlockingStub stub() {
    return client.withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  static Status refusal(SearchRequest r) {
    return assertThrows(StatusRuntimeException.class, () -> stub().search(r), r.toString().lines().limit(20)
        .reduce("", (a, b) -> a + b + "; ")).getStatus();
  }

  /** A good query still answers exactly. */
  static void stillAnswers() {
    float[] q = TestBooks.randomQuery(2, 99);
    books.assertExact(stub().search(TestBooks.request(q, 2, 5).build()), q, 2, 5, TestBooks.allDocs());
  }

  /** A request of (heads, queries, head_dim) with a query of that many floats (zeros where too many). */
  static SearchRequest.Builder shaped(String collection, int heads, int queries, int headDim) {
    long n = (long) heads * queries * headDim;
    float[] q = TestBooks.randomQuery(1, 5);
    SearchRequest.Builder b = TestBooks.request(q, 1, 5).clearCollections().addCollections(collection)
        .setHeads(heads).setQueries(queries).setHeadDim(headDim);
    if (n > 0 && n <= 1 << 20) {
      b.setQuery(Wire.bytes(new float[(int) n], (int) n));
    }
    return b;
  }

  @Test
  void everyNumericSearchFieldIsBoundedBeforeAnyWork() {
    float[] q = TestBooks.randomQuery(2, 3);
    List<UnaryOperator<SearchRequest.Builder>> bad = List.of(
        b -> b.clearCollections().addCollections("hnsw").setEfSearch(Integer.MAX_VALUE), // aborted the process
        b -> b.clearCollections().addCollections("hnsw").setEfSearch(4097),
        b -> b.setEfSearch(-1),
        b -> b.clearCollections().addCollections("ivf").setNprobe(5), // nlist is 4
        b -> b.setNprobe(Integer.MAX_VALUE),
        b -> b.setNprobe(-1),
        b -> b.setK(0), b -> b.setK(-1), b -> b.setK(65), b -> b.setK(Integer.MAX_VALUE),
        b -> b.setRefine(-1), b -> b.setRefine(65), b -> b.setRefine(Integer.MAX_VALUE),
        b -> b.setLayer(-1), b -> b.setLayer(Integer.MIN_VALUE), b -> b.setLayer(1024),
        b -> b.addCollections("books"));
    for (UnaryOperator<SearchRequest.Builder> m : bad) {
      SearchRequest r = m.apply(TestBooks.request(q, 2, 5)).build();
      Status s = refusal(r);
      assertEquals(Status.Code.INVALID_ARGUMENT, s.getCode(), s.toString());
      stillAnswers();
    }
    for (int[] shape : new int[][] {{HEADS, 257, DIM}, {HEADS, -1, DIM}, {HEADS, Integer.MAX_VALUE, DIM},
        {257, 1, DIM}, {Integer.MAX_VALUE, 1, 1}, {-3, 1, DIM}, {HEADS, 1, 1025}, {HEADS, 1, Integer.MIN_VALUE}}) {
      Status s = refusal(shaped("books", shape[0], shape[1], shape[2]).build());
      assertEquals(Status.Code.INVALID_ARGUMENT, s.getCode(), s.toString());
      assertTrue(s.getDescription().matches("(heads|queries|head_dim) must be in \\[.*"), s.getDescription());
    }
    // at the bounds: answered
    SearchResponse ok = stub().search(TestBooks.request(q, 2, 5).clearCollections().addCollections("hnsw")
        .setEfSearch(4096).build());
    assertEquals(HEADS, ok.getHeadsCount());
    ok = stub().search(TestBooks.request(q, 2, 5).clearCollections().addCollections("ivf").setNprobe(4).build());
    assertEquals(HEADS, ok.getHeadsCount());
    assertEquals(HEADS, stub().search(shaped("books", HEADS, 256, DIM).setK(1).build()).getHeadsCount());
    stillAnswers();
  }

  @Test
  void anAnswerTooLargeToSendIsRefusedBeforeTheSearch() throws Exception {
    ServiceConfig c = books.config("local", null);
    c.maxMessageMb = 1;
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub small = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(40, 8);
      // 40 x 64 choices per head: up to 2,560 pairs of 136 bytes each, more than 1 MiB over 4 heads
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> small.search(TestBooks.request(q, 40, 64).build()));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("refused before searching"), e.getStatus().getDescription());
      // as float16 the worst case fits
      SearchResponse half = small.search(TestBooks.request(q, 40, 64).setFloat16Pairs(true).build());
      assertEquals(HEADS, half.getHeadsCount());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void searchesInFlightAreBoundedByBytes() throws Exception {
    ServiceConfig c = books.config("local", null);
    c.maxInflightMb = 1;
    c.inflightWaitMs = 100;
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub client = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(64, 9);
      SearchRequest big = TestBooks.request(q, 64, 64).build();
      // a search admitted and not yet done holds the whole budget (it needs more than 1 MiB)
      try (MemoryNode.Admitted held = s.node().admit(Protos.toQuery(big), false, "")) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.search(big));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("searches in flight"), e.getStatus().getDescription());
      }
      assertEquals(HEADS, client.search(big).getHeadsCount(), "answered once the budget is back");
      // many at once: each is answered or refused, nothing else
      ExecutorService callers = Executors.newFixedThreadPool(6);
      try {
        List<Future<Status.Code>> calls = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
          calls.add(callers.submit(() -> {
            try {
              client.search(big);
              return Status.Code.OK;
            } catch (StatusRuntimeException x) {
              return x.getStatus().getCode();
            }
          }));
        }
        for (Future<Status.Code> f : calls) {
          Status.Code code = f.get(60, TimeUnit.SECONDS);
          assertTrue(code == Status.Code.OK || code == Status.Code.RESOURCE_EXHAUSTED, code.toString());
        }
      } finally {
        callers.shutdownNow();
      }
      // a call gives its bytes back just after its answer is sent: the client may see it first
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (inflightHeld(s.node()) != 0 && System.nanoTime() < deadline) {
        Thread.sleep(10);
      }
      assertEquals(0, inflightHeld(s.node()), "every search gave its bytes back");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  private static long inflightHeld(MemoryNode node) throws Exception {
    var f = MemoryNode.class.getDeclaredField("inflight");
    f.setAccessible(true);
    return ((ByteBudget) f.get(node)).used();
  }

  @Test
  void aCancelledOrTimedOutSearchStops() throws Exception {
    SearchQuery q = Protos.toQuery(TestBooks.request(TestBooks.randomQuery(3, 4), 3, 5).build());
    Context.CancellableContext cancelled = Context.current().withCancellation();
    cancelled.cancel(null);
    RequestException e = assertThrows(RequestException.class, () -> cancelled.call(() -> server.node().search(q)));
    assertEquals(RequestException.Kind.CANCELLED, e.kind());
    ScheduledDeadline timedOut = new ScheduledDeadline();
    try {
      RequestException d = assertThrows(RequestException.class, () -> timedOut.context.call(() -> server.node().search(q)));
      assertEquals(RequestException.Kind.DEADLINE_EXCEEDED, d.kind());
    } finally {
      timedOut.close();
    }
    // over the wire: a deadline that passes is the client's DEADLINE_EXCEEDED, and the node goes on
    float[] many = TestBooks.randomQuery(256, 6);
    StatusRuntimeException x = assertThrows(StatusRuntimeException.class, () -> stub().withDeadlineAfter(1,
        TimeUnit.MILLISECONDS).search(TestBooks.request(many, 256, 64).build()));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, x.getStatus().getCode());
    stillAnswers();
  }

  /** A context whose deadline has already passed. */
  private static final class ScheduledDeadline implements AutoCloseable {
    final java.util.concurrent.ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    final Context.CancellableContext context;

    ScheduledDeadline() throws InterruptedException {
      context = Context.current().withDeadline(Deadline.after(1, TimeUnit.MILLISECONDS), timer);
      while (!context.isCancelled()) {
        Thread.sleep(5);
      }
    }

    @Override
    public void close() {
      context.cancel(null);
      timer.shutdownNow();
    }
  }

  @Test
  void statusMessagesAreBoundedAndShowNoServerPaths() {
    String huge = "x".repeat(1 << 20);
    Status s = refusal(TestBooks.request(TestBooks.randomQuery(1, 1), 1, 1).clearCollections()
        .addCollections(huge).build());
    assertEquals(Status.Code.NOT_FOUND, s.getCode());
    assertTrue(s.getDescription().length() < 1000, "echoed " + s.getDescription().length() + " chars");
    assertTrue(s.getDescription().contains("(" + huge.length() + " chars)"), s.getDescription());

    Status session = assertThrows(StatusRuntimeException.class, () -> stub().dropSession(
        DropSessionRequest.newBuilder().setSession(huge).build())).getStatus();
    assertEquals(Status.Code.NOT_FOUND, session.getCode());
    assertTrue(session.getDescription().length() < 1000, session.getDescription());

    SearchRequest.Builder docs = TestBooks.request(TestBooks.randomQuery(1, 1), 1, 1);
    for (int i = 0; i < 5000; i++) {
      docs.addDocuments(huge.substring(0, 200) + i);
    }
    Status d = refusal(docs.build());
    assertEquals(Status.Code.NOT_FOUND, d.getCode());
    assertTrue(d.getDescription().length() < 3000, d.getDescription().length() + " chars");

    Status broken = refusal(TestBooks.request(TestBooks.randomQuery(1, 1), 1, 1).clearCollections()
        .addCollections("broken").build());
    assertEquals(Status.Code.FAILED_PRECONDITION, broken.getCode());
    assertTrue(broken.getDescription().contains("broken"), broken.getDescription());
    assertFalse(broken.getDescription().contains(tmp.toString()), broken.getDescription());
    assertFalse(broken.getDescription().contains(tmp.toAbsolutePath().toString()), broken.getDescription());
    assertTrue(server.node().refused().get("broken") != null, "the node keeps the full reason for its log");
    stillAnswers();
  }
}
