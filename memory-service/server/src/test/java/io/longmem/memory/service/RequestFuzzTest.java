package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.AppendSessionRequest;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A bounded, seeded fuzz run of Search, CreateSession and AppendSession on a real loopback node
 * over real collections (Flat and HNSW): valid requests mutated in a few fields at a time (extreme
 * numbers, wrong byte lengths, NaNs, long names, unknown ids). Every reply must be an answer or a
 * status other than INTERNAL or UNKNOWN, and at the end the node is alive and still answers a
 * known query exactly.
 */
class RequestFuzzTest {
  static final int HEADS = TestBooks.HEADS;
  static final int DIM = TestBooks.DIM;
  static final int REQUESTS = 3000;
  static final int[] EXTREMES = {Integer.MIN_VALUE, -65536, -2, -1, 0, 1, 2, 3, 4, 5, 7, 16, 17, 63, 64, 65, 100, 256,
      1023, 1024, 4096, 4097, 65536, 1 << 20, 1_000_000, Integer.MAX_VALUE - 1, Integer.MAX_VALUE};

  @TempDir
  Path tmp;

  @Test
  void fuzzedRequestsGetAnswersOrClearStatuses() throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    books.writeAs(tmp.resolve("hnsw"), "HNSW32");
    ServiceConfig c = books.config("local", null);
    c.collections = Map.of("books", tmp.resolve("books").toString(), "hnsw", tmp.resolve("hnsw").toString());
    c.maxSessions = 8;
    c.maxSessionMb = 4;
    c.maxSessionsTotalMb = 16;
    c.inflightWaitMs = 200;
    List<ManagedChannel> open = new ArrayList<>();
    Random r = new Random(20261202);
    Map<Status.Code, Integer> codes = new TreeMap<>();
    List<String> sessions = new ArrayList<>();
    long t0 = System.nanoTime();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub client = TestBooks.client(s, open);
      for (int i = 0; i < REQUESTS; i++) {
        MemoryGrpc.MemoryBlockingStub stub = client.withDeadlineAfter(30, TimeUnit.SECONDS);
        int what = r.nextInt(8);
        String described;
        Status.Code code = Status.Code.OK;
        try {
          if (what < 4) {
            SearchRequest req = search(r, sessions);
            described = "search " + brief(req.toString());
            stub.search(req);
          } else if (what < 6) {
            AppendSessionRequest req = append(r, sessions);
            described = "append " + brief(req.toString());
            stub.appendSession(req);
          } else if (what < 7) {
            CreateSessionRequest req = create(r);
            described = "create " + brief(req.toString());
            sessions.add(stub.createSession(req).getSession());
          } else {
            String id = sessions.isEmpty() || r.nextInt(4) == 0 ? name(r) : sessions.remove(r.nextInt(sessions.size()));
            described = "drop " + brief(id);
            stub.dropSession(DropSessionRequest.newBuilder().setSession(id).build());
          }
        } catch (StatusRuntimeException e) {
          code = e.getStatus().getCode();
          assertTrue(code != Status.Code.INTERNAL && code != Status.Code.UNKNOWN,
              "request " + i + ": " + e.getStatus());
        }
        codes.merge(code, 1, Integer::sum);
      }
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, HealthGrpc.newBlockingStub(open.get(0))
          .check(HealthCheckRequest.newBuilder().setService(MemoryGrpc.SERVICE_NAME).build()).getStatus());
      float[] q = TestBooks.randomQuery(3, 17);
      // a deadline from now: the client's own was set before the fuzz, which may take longer than it
      books.assertExact(client.withDeadlineAfter(30, TimeUnit.SECONDS).search(TestBooks.request(q, 3, 10).build()), q,
          3, 10, TestBooks.allDocs());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
    System.out.printf("fuzz: %d requests in %d ms: %s%n", REQUESTS, (System.nanoTime() - t0) / 1_000_000, codes);
    assertTrue(codes.getOrDefault(Status.Code.OK, 0) > REQUESTS / 20, "some requests were good: " + codes);
  }

  private static String brief(String s) {
    return s.length() > 300 ? s.substring(0, 300) + "..." : s;
  }

  /** A field's value: usually the good one, else an extreme or a small random number. */
  private static int field(Random r, int good, double mutate) {
    if (r.nextDouble() >= mutate) {
      return good;
    }
    return r.nextBoolean() ? EXTREMES[r.nextInt(EXTREMES.length)] : r.nextInt(200) - 20;
  }

  private static String name(Random r) {
    switch (r.nextInt(5)) {
      case 0: return "";
      case 1: return "x".repeat(r.nextInt(100_000));
      case 2: return "session-" + java.util.UUID.randomUUID();
      case 3: return "\u0000\u00ff../../etc";
      default: return "books";
    }
  }

  /** floats for a shape: the right count (often) or a random one, with a NaN now and then. */
  private static ByteString floats(Random r, long count) {
    int n = count >= 0 && count <= 200_000 && r.nextInt(5) != 0 ? (int) count : r.nextInt(2000);
    float[] f = new float[n];
    for (int i = 0; i < n; i++) {
      f[i] = (float) r.nextGaussian();
    }
    if (n > 0 && r.nextInt(20) == 0) {
      f[r.nextInt(n)] = r.nextBoolean() ? Float.NaN : Float.POSITIVE_INFINITY;
    }
    ByteString b = Wire.bytes(f, n);
    return r.nextInt(30) == 0 && b.size() > 0 ? b.substring(0, b.size() - 1 - r.nextInt(Math.min(3, b.size()))) : b;
  }

  private static SearchRequest search(Random r, List<String> sessions) {
    double m = r.nextInt(3) == 0 ? 0 : 0.25;
    int heads = field(r, HEADS, m / 2);
    int queries = field(r, 1 + r.nextInt(8), m);
    int dim = field(r, DIM, m / 2);
    SearchRequest.Builder b = SearchRequest.newBuilder().setLayer(field(r, 1 + r.nextInt(2), m / 2))
        .setHeads(heads).setQueries(queries).setHeadDim(dim).setK(field(r, 1 + r.nextInt(20), m))
        .setNprobe(field(r, 0, m / 2)).setEfSearch(field(r, 0, m / 2)).setRefine(field(r, 0, m / 2))
        .setFloat16Pairs(r.nextBoolean());
    b.setQuery(floats(r, (long) heads * queries * dim));
    int where = r.nextInt(6);
    if (where < 3) {
      b.addCollections("books");
    }
    if (where == 2 || where == 3) {
      b.addCollections("hnsw");
    }
    if (where == 4 || r.nextInt(10) == 0) {
      b.addSessions(sessions.isEmpty() || r.nextInt(5) == 0 ? name(r) : sessions.get(r.nextInt(sessions.size())));
    }
    if (where == 5) {
      b.addCollections(name(r));
    }
    if (r.nextInt(8) == 0) {
      b.addDocuments(r.nextBoolean() ? "doc-" + r.nextInt(7) : name(r));
    }
    return b.build();
  }

  private static CreateSessionRequest create(Random r) {
    double m = 0.3;
    CreateSessionRequest.Builder b = CreateSessionRequest.newBuilder().setHeads(field(r, HEADS, m))
        .setHeadDim(field(r, DIM, m));
    int layers = r.nextInt(10) == 0 ? r.nextInt(100) : 1 + r.nextInt(2);
    for (int i = 0; i < layers; i++) {
      b.addLayers(field(r, 1 + i, m / 2));
    }
    return b.build();
  }

  private static AppendSessionRequest append(Random r, List<String> sessions) {
    double m = r.nextInt(3) == 0 ? 0 : 0.25;
    int tokens = field(r, 1 + r.nextInt(16), m);
    int heads = field(r, HEADS, m / 2);
    int dim = field(r, DIM, m / 2);
    long count = (long) heads * tokens * dim;
    AppendSessionRequest.Builder b = AppendSessionRequest.newBuilder()
        .setSession(sessions.isEmpty() || r.nextInt(6) == 0 ? name(r) : sessions.get(r.nextInt(sessions.size())))
        .setLayer(field(r, 1 + r.nextInt(2), m / 2)).setTokens(tokens)
        .setKeys(floats(r, count)).setValues(floats(r, count));
    if (r.nextBoolean()) {
      int n = r.nextInt(8) == 0 ? r.nextInt(40) : Math.max(0, Math.min(tokens, 10_000));
      for (int t = 0; t < n; t++) {
        b.addPositions(field(r, t, m / 2));
      }
    }
    return b.build();
  }
}
