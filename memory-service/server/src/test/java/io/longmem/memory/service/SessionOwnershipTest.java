package io.longmem.memory.service;

import static io.longmem.memory.service.SecureNodes.OTHER_WORKER;
import static io.longmem.memory.service.SecureNodes.SEARCHER;
import static io.longmem.memory.service.SecureNodes.WORKER;
import static io.longmem.memory.service.SecureNodes.client;
import static io.longmem.memory.service.SecureNodes.plaintext;
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
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A session belongs to the token that created it: another caller can neither read, append to
 * nor drop it, and is told what it would be told of a handle never made. Handles are 192 random
 * bits.
 */
class SessionOwnershipTest {
  static final int HEADS = 2;
  static final int DIM = 4;

  static String create(MemoryGrpc.MemoryBlockingStub s) {
    return s.createSession(CreateSessionRequest.newBuilder().addLayers(1).setHeads(HEADS).setHeadDim(DIM).build())
        .getSession();
  }

  static AppendSessionRequest append(String id) {
    float[] kv = new float[HEADS * DIM];
    java.util.Arrays.fill(kv, 0.5f);
    return AppendSessionRequest.newBuilder().setSession(id).setLayer(1).setTokens(1)
        .setKeys(Wire.bytes(kv, kv.length)).setValues(Wire.bytes(kv, kv.length)).build();
  }

  static SearchRequest search(String id) {
    float[] q = new float[HEADS * DIM];
    java.util.Arrays.fill(q, 1f);
    return SearchRequest.newBuilder().addSessions(id).setLayer(1).setHeads(HEADS).setQueries(1).setHeadDim(DIM)
        .setK(1).setQuery(Wire.bytes(q, q.length)).build();
  }

  /** What each session call answers for {@code id}: NOT_FOUND's message, with the handle cut out. */
  static List<String> notFound(MemoryGrpc.MemoryBlockingStub s, String id) {
    List<Function<String, Object>> calls = List.of(i -> s.search(search(i)), i -> s.appendSession(append(i)),
        i -> s.dropSession(DropSessionRequest.newBuilder().setSession(i).build()));
    List<String> out = new ArrayList<>();
    for (Function<String, Object> c : calls) {
      Status st = assertThrows(StatusRuntimeException.class, () -> c.apply(id)).getStatus();
      assertEquals(Status.Code.NOT_FOUND, st.getCode(), st.toString());
      out.add(st.getDescription().replace(id, "<handle>"));
    }
    return out;
  }

  @Test
  void anotherCallerCannotUseASession(@TempDir Path tmp) throws Exception {
    ServiceConfig c = TestBooks.write(tmp.resolve("books")).config("local", null);
    c.auth.tokensFile = SecureNodes.tokensFile(tmp).toString();
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer node = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub a = client(node.port(), plaintext(), WORKER, open);
      MemoryGrpc.MemoryBlockingStub b = client(node.port(), plaintext(), OTHER_WORKER, open);
      MemoryGrpc.MemoryBlockingStub reader = client(node.port(), plaintext(), SEARCHER, open);
      String mine = create(a);
      assertEquals(1, a.appendSession(append(mine)).getTokens());
      String unknown = Base64.getUrlEncoder().withoutPadding().encodeToString(new byte[Sessions.HANDLE_BYTES]);
      List<String> never = notFound(b, unknown);
      assertEquals(never, notFound(b, mine), "B is told of A's session what it is told of none");
      Status read = assertThrows(StatusRuntimeException.class, () -> reader.search(search(mine))).getStatus();
      assertEquals(Status.Code.NOT_FOUND, read.getCode(), "a search-only token owns no session: " + read);
      assertEquals(never.get(0), read.getDescription().replace(mine, "<handle>"));
      // A's session is untouched: one token, still searchable, then dropped by A
      assertEquals(2, a.appendSession(append(mine)).getTokens());
      assertEquals(1, a.search(search(mine)).getHeads(0).getPairs());
      a.dropSession(DropSessionRequest.newBuilder().setSession(mine).build());
      assertEquals(never, notFound(a, mine));
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void handlesAre192RandomBits() {
    try (Sessions sessions = new Sessions(2000, 10)) {
      Set<String> seen = new HashSet<>();
      int ones = 0;
      int n = 1000;
      for (int i = 0; i < n; i++) {
        String h = sessions.create("x", List.of(1), 1, 1);
        assertTrue(h.matches("[A-Za-z0-9_-]{32}"), h);
        byte[] bits = Base64.getUrlDecoder().decode(h);
        assertEquals(24, bits.length);
        for (byte x : bits) {
          ones += Integer.bitCount(x & 0xff);
        }
        assertTrue(seen.add(h), "a handle made twice");
      }
      double share = ones / (n * 192.0); // 192,000 fair bits: 0.5 +- 0.0011 (1 sigma)
      assertTrue(Math.abs(share - 0.5) < 0.01, "share of one bits " + share);
    }
  }
}
