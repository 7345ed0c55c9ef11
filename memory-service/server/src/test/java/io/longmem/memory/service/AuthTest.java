package io.longmem.memory.service;

import static io.longmem.memory.service.SecureNodes.ADMIN;
import static io.longmem.memory.service.SecureNodes.SEARCHER;
import static io.longmem.memory.service.SecureNodes.WORKER;
import static io.longmem.memory.service.SecureNodes.client;
import static io.longmem.memory.service.SecureNodes.plaintext;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import io.longmem.memory.api.BearerToken;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.ListCollectionsRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchShardsRequest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Bearer tokens and roles on a real node (loopback): for each class of method (search, sessions,
 * admin) a call without a token or with a wrong one is UNAUTHENTICATED, one whose token lacks the
 * role PERMISSION_DENIED, one with the role answered; health and reflection need no token.
 */
class AuthTest {
  @TempDir
  static Path tmp;
  static TestBooks books;
  static MemoryServer node;
  static final List<ManagedChannel> OPEN = new ArrayList<>();

  @BeforeAll
  static void start() throws Exception {
    books = TestBooks.write(tmp.resolve("books"));
    ServiceConfig c = books.config("local", null);
    c.auth.tokensFile = SecureNodes.tokensFile(tmp).toString();
    node = MemoryServer.start(c);
  }

  @AfterAll
  static void stop() {
    OPEN.forEach(ManagedChannel::shutdownNow);
    node.close();
  }

  static MemoryGrpc.MemoryBlockingStub as(String token) {
    return client(node.port(), plaintext(), token, OPEN);
  }

  /** One call of each method class, by role. */
  static final Map<String, Consumer<MemoryGrpc.MemoryBlockingStub>> CALLS = Map.of(
      "search", s -> s.search(TestBooks.request(TestBooks.randomQuery(1, 3), 1, 4).build()),
      "list", s -> s.listCollections(ListCollectionsRequest.getDefaultInstance()),
      "sessions", s -> s.dropSession(DropSessionRequest.newBuilder().setSession(s.createSession(
          CreateSessionRequest.newBuilder().addLayers(1).setHeads(2).setHeadDim(4).build()).getSession()).build()),
      "admin", s -> s.searchShards(SearchShardsRequest.newBuilder().setCollection("books").addShards("shard-1")
          .setSearch(TestBooks.request(TestBooks.randomQuery(1, 4), 1, 4)).build()));

  static Status refused(MemoryGrpc.MemoryBlockingStub stub, String call) {
    return assertThrows(StatusRuntimeException.class, () -> CALLS.get(call).accept(stub), call).getStatus();
  }

  @Test
  void everyMethodClassNeedsAKnownTokenWithItsRole() {
    Map<String, String> allowed = Map.of("search", SEARCHER, "list", SEARCHER, "sessions", WORKER, "admin", ADMIN);
    Map<String, String> lacking = Map.of("search", ADMIN, "list", ADMIN, "sessions", SEARCHER, "admin", WORKER);
    for (String call : CALLS.keySet()) {
      Status none = refused(as(null), call);
      assertEquals(Status.Code.UNAUTHENTICATED, none.getCode(), call + ": " + none);
      assertTrue(none.getDescription().contains("no bearer token"), none.getDescription());
      Status wrong = refused(as("not-a-token-" + call), call);
      assertEquals(Status.Code.UNAUTHENTICATED, wrong.getCode(), call + ": " + wrong);
      assertFalse(wrong.getDescription().contains("not-a-token"), "the token echoed: " + wrong.getDescription());
      Status role = refused(as(lacking.get(call)), call);
      assertEquals(Status.Code.PERMISSION_DENIED, role.getCode(), call + ": " + role);
      assertTrue(role.getDescription().contains("lacks the role"), role.getDescription());
      assertFalse(role.getDescription().contains(lacking.get(call)), "the token echoed: " + role.getDescription());
      CALLS.get(call).accept(as(allowed.get(call))); // answered
    }
  }

  @Test
  void onlyBearerAuthorizationCounts() {
    Metadata basic = new Metadata();
    basic.put(BearerToken.AUTHORIZATION, "Basic " + SEARCHER);
    Status s = refused(as(null).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(basic)), "list");
    assertEquals(Status.Code.UNAUTHENTICATED, s.getCode());
    assertFalse(s.getDescription().contains(SEARCHER));
    Metadata lower = new Metadata();
    lower.put(BearerToken.AUTHORIZATION, "bearer " + SEARCHER); // the scheme is case-insensitive (RFC 6750)
    CALLS.get("list").accept(as(null).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(lower)));
  }

  @Test
  void healthAndReflectionNeedNoToken() throws Exception {
    ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", node.port()).usePlaintext().build();
    OPEN.add(ch);
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, HealthGrpc.newBlockingStub(ch)
        .check(HealthCheckRequest.newBuilder().setService("longmem.memory.v1.Memory").build()).getStatus());
    assertTrue(ReflectionTest.servicesV1(ch).contains("longmem.memory.v1.Memory"));
    assertTrue(ReflectionTest.servicesV1Alpha(ch).contains("longmem.memory.v1.Memory"));
  }
}
