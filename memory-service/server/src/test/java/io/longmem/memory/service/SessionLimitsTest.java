package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.AppendSessionRequest;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sessions on a real loopback node against hostile requests: shapes and layers bounded at
 * creation, memory counted in bytes per session and for the node, abandoned sessions dropped
 * after their idle time, and positions a search could be poisoned by refused.
 */
class SessionLimitsTest {
  @TempDir
  Path tmp;

  private ServiceConfig config() {
    ServiceConfig c = new ServiceConfig();
    c.port = 0;
    c.collections = Map.of();
    c.maxMessageMb = 16;
    return c;
  }

  private static String create(MemoryGrpc.MemoryBlockingStub stub, List<Integer> layers, int heads, int dim) {
    return stub.createSession(CreateSessionRequest.newBuilder().addAllLayers(layers).setHeads(heads).setHeadDim(dim)
        .build()).getSession();
  }

  private static Status createRefused(MemoryGrpc.MemoryBlockingStub stub, List<Integer> layers, int heads, int dim) {
    return assertThrows(StatusRuntimeException.class, () -> create(stub, layers, heads, dim),
        layers + " " + heads + " " + dim).getStatus();
  }

  static AppendSessionRequest append(String session, int layer, int heads, int dim, int n, Random r) {
    float[] k = new float[heads * n * dim];
    float[] v = new float[k.length];
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) r.nextGaussian();
      v[i] = (float) r.nextGaussian();
    }
    return AppendSessionRequest.newBuilder().setSession(session).setLayer(layer).setTokens(n)
        .setKeys(Wire.bytes(k, k.length)).setValues(Wire.bytes(v, v.length)).build();
  }

  private static MemoryServer start(ServiceConfig c, List<ManagedChannel> open, MemoryGrpc.MemoryBlockingStub[] stub)
      throws Exception {
    MemoryServer s = MemoryServer.start(c);
    stub[0] = TestBooks.client(s, open);
    return s;
  }

  @Test
  void shapesAndLayersAreBoundedAtCreation() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    MemoryGrpc.MemoryBlockingStub[] stub = new MemoryGrpc.MemoryBlockingStub[1];
    try (MemoryServer s = start(config(), open, stub)) {
      long t0 = System.nanoTime();
      for (Object[] bad : new Object[][] {
          {List.of(1), 1_000_000, 8}, // built a million FAISS indexes
          {List.of(1), 257, 8}, {List.of(1), 0, 8}, {List.of(1), -1, 8}, {List.of(1), Integer.MAX_VALUE, 8},
          {List.of(1), 4, 1025}, {List.of(1), 4, 0}, {List.of(1), 4, Integer.MIN_VALUE},
          {List.of(-5), 4, 8}, {List.of(Integer.MAX_VALUE), 4, 8}, {List.of(1024), 4, 8}, {List.of(), 4, 8},
          {List.of(3, 3), 4, 8}, {List.of(1, 2, 1), 4, 8}, {java.util.stream.IntStream.range(0, 65).boxed().toList(), 4, 8}}) {
        @SuppressWarnings("unchecked")
        Status st = createRefused(stub[0], (List<Integer>) bad[0], (int) bad[1], (int) bad[2]);
        assertEquals(Status.Code.INVALID_ARGUMENT, st.getCode(), st.toString());
      }
      assertTrue(System.nanoTime() - t0 < 5_000_000_000L, "refused without building anything");
      assertEquals(0, s.node().sessions().count());
      assertEquals(0, s.node().sessions().bytes(), "refused sessions hold nothing");
      String ok = create(stub[0], List.of(0, 1023), 4, 8);
      stub[0].dropSession(DropSessionRequest.newBuilder().setSession(ok).build());
      assertEquals(0, s.node().sessions().bytes(), "a dropped session gives its bytes back");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void aSessionIsLimitedByItsBytes() throws Exception {
    ServiceConfig c = config();
    c.maxSessionMb = 1;
    List<ManagedChannel> open = new ArrayList<>();
    MemoryGrpc.MemoryBlockingStub[] stub = new MemoryGrpc.MemoryBlockingStub[1];
    Random r = new Random(1);
    try (MemoryServer s = start(c, open, stub)) {
      // 32 heads x 100: 38 KiB a token (keys, values, index); a token limit let it exhaust the heap
      String id = create(stub[0], List.of(1), 32, 100);
      int held = 0;
      StatusRuntimeException full = null;
      while (held < 1000 && full == null) {
        try {
          held = (int) stub[0].appendSession(append(id, 1, 32, 100, 4, r)).getTokens();
        } catch (StatusRuntimeException e) {
          full = e;
        }
      }
      assertTrue(full != null, "1 MiB holds no 1000 tokens of 32 x 100");
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, full.getStatus().getCode());
      assertTrue(full.getStatus().getDescription().contains("max_session_mb"), full.getStatus().getDescription());
      assertTrue(held >= 8, "appended " + held + " before the limit");
      assertTrue(s.node().sessions().bytes() <= 1 << 20, s.node().sessions().bytes() + " bytes");
      // still searchable
      float[] q = new float[32 * 100];
      SearchResponse a = stub[0].search(SearchRequest.newBuilder().addSessions(id).setLayer(1).setHeads(32)
          .setQueries(1).setHeadDim(100).setQuery(Wire.bytes(q, q.length)).setK(3).build());
      assertEquals(32, a.getHeadsCount());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void allSessionsTogetherAreLimitedByBytes() throws Exception {
    ServiceConfig c = config();
    c.maxSessionMb = 4;
    c.maxSessionsTotalMb = 1;
    List<ManagedChannel> open = new ArrayList<>();
    MemoryGrpc.MemoryBlockingStub[] stub = new MemoryGrpc.MemoryBlockingStub[1];
    Random r = new Random(2);
    try (MemoryServer s = start(c, open, stub)) {
      String a = create(stub[0], List.of(1), 8, 64);
      String b = create(stub[0], List.of(1), 8, 64);
      // 8 x 64 x 12 bytes = 6 KiB a token: 120 tokens each are 0.7 MiB, both more than the node's 1 MiB
      stub[0].appendSession(append(a, 1, 8, 64, 100, r));
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> stub[0].appendSession(append(b, 1, 8, 64, 100, r)));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("sessions on this node"), e.getStatus().getDescription());
      stub[0].dropSession(DropSessionRequest.newBuilder().setSession(a).build());
      assertEquals(100, stub[0].appendSession(append(b, 1, 8, 64, 100, r)).getTokens(), "room once a is dropped");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void abandonedSessionsExpire() throws Exception {
    ServiceConfig c = config();
    c.maxSessions = 2;
    c.sessionIdleMs = 500;
    List<ManagedChannel> open = new ArrayList<>();
    MemoryGrpc.MemoryBlockingStub[] stub = new MemoryGrpc.MemoryBlockingStub[1];
    Random r = new Random(3);
    try (MemoryServer s = start(c, open, stub)) {
      String used = create(stub[0], List.of(1), 2, 4);
      String abandoned = create(stub[0], List.of(1), 2, 4);
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, createRefused(stub[0], List.of(1), 2, 4).getCode());
      long until = System.nanoTime() + 1_600_000_000L;
      while (System.nanoTime() < until) { // one client keeps using its session
        stub[0].appendSession(append(used, 1, 2, 4, 1, r));
        Thread.sleep(50);
      }
      String fresh = create(stub[0], List.of(1), 2, 4);
      assertTrue(fresh.matches("[A-Za-z0-9_-]{32}"), fresh);
      Status gone = assertThrows(StatusRuntimeException.class,
          () -> stub[0].appendSession(append(abandoned, 1, 2, 4, 1, r))).getStatus();
      assertEquals(Status.Code.NOT_FOUND, gone.getCode());
      assertTrue(stub[0].appendSession(append(used, 1, 2, 4, 1, r)).getTokens() > 10, "the used one stays");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void positionsOutsideTheIntRangeAreRefusedAndDoNotPoisonSearches() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    MemoryGrpc.MemoryBlockingStub[] stub = new MemoryGrpc.MemoryBlockingStub[1];
    Random r = new Random(4);
    try (MemoryServer s = start(config(), open, stub)) {
      String id = create(stub[0], List.of(1), 2, 4);
      stub[0].appendSession(append(id, 1, 2, 4, 2, r).toBuilder().addPositions(5).addPositions(6).build());
      for (int bad : new int[] {Integer.MIN_VALUE, -1, Integer.MAX_VALUE}) {
        Status st = assertThrows(StatusRuntimeException.class, () -> stub[0].appendSession(
            append(id, 1, 2, 4, 2, r).toBuilder().addPositions(7).addPositions(bad).build())).getStatus();
        assertEquals(Status.Code.INVALID_ARGUMENT, st.getCode());
        assertTrue(st.getDescription().startsWith("positions:"), st.getDescription());
      }
      float[] q = new float[2 * 3 * 4];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) r.nextGaussian();
      }
      SearchResponse a = stub[0].search(SearchRequest.newBuilder().addSessions(id).setLayer(1).setHeads(2)
          .setQueries(3).setHeadDim(4).setQuery(Wire.bytes(q, q.length)).setK(4).build());
      int[] positions = Wire.ints(a.getHeads(0).getPairPosition());
      assertEquals(2, positions.length, "only the two good tokens");
      for (int p : positions) {
        assertTrue(p == 5 || p == 6, "position " + p);
      }
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }
}
