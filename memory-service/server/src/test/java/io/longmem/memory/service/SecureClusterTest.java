package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.security.NodeSecurity;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two TLS nodes with tokens, the collection's shards split between them: the coordinator reaches
 * the other over TLS (tls.peer_ca) with its node token, and the merged answer is exact. Without
 * the node token, with one lacking the admin role, or without TLS to the peer, the remote part is
 * refused and so is the search (never a partial answer).
 */
class SecureClusterTest {
  @TempDir
  static Path tmp;
  static TestCerts certs;
  static TestBooks books;
  static Path tokens;
  static Path adminToken;
  static Path searchToken;

  @BeforeAll
  static void make() throws Exception {
    assumeTrue(System.getenv(NodeSecurity.NODE_TOKEN_ENV) == null, "LONGMEM_NODE_TOKEN is set in this environment");
    certs = TestCerts.make(tmp.resolve("certs"));
    books = TestBooks.write(tmp.resolve("books"));
    tokens = SecureNodes.tokensFile(tmp);
    adminToken = Files.writeString(tmp.resolve("node-token"), SecureNodes.ADMIN + "\n");
    searchToken = Files.writeString(tmp.resolve("search-token"), SecureNodes.SEARCHER + "\n");
  }

  /** Two secured nodes (n0: shards 0 and 1, n1: shard 2), each changed by {@code change}. */
  static List<MemoryServer> start(String name, Consumer<ServiceConfig> change) throws Exception {
    int[] ports = {ClusterTest.freePort(), ClusterTest.freePort()};
    Path cluster = Files.writeString(tmp.resolve(name + ".json"), "{\"replication\": 1, \"nodes\": ["
        + "{\"id\": \"n0\", \"address\": \"127.0.0.1:" + ports[0] + "\", \"shards\": {\"books\": [\"shard-0\", \"shard-1\"]}},"
        + "{\"id\": \"n1\", \"address\": \"127.0.0.1:" + ports[1] + "\", \"shards\": {\"books\": [\"shard-2\"]}}]}");
    List<MemoryServer> nodes = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      ServiceConfig c = books.config("n" + i, cluster.toString());
      c.port = ports[i];
      c.tls.certChain = certs.cert("server").toString();
      c.tls.privateKey = certs.key("server").toString();
      c.tls.clientCa = certs.ca().toString();
      c.tls.peerCa = certs.ca().toString();
      c.auth.tokensFile = tokens.toString();
      c.auth.nodeTokenFile = adminToken.toString();
      change.accept(c);
      nodes.add(MemoryServer.start(c));
    }
    return nodes;
  }

  static MemoryGrpc.MemoryBlockingStub worker(MemoryServer s, List<ManagedChannel> open) throws Exception {
    return SecureNodes.client(s.port(), SecureNodes.tls(certs.ca(), certs.cert("client"), certs.key("client")),
        SecureNodes.WORKER, open);
  }

  @Test
  void nodesSearchEachOtherOverTlsWithTheNodeToken() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    List<MemoryServer> nodes = start("secure", c -> {});
    try {
      float[] q = randomQuery(2, 21);
      for (MemoryServer coordinator : nodes) {
        books.assertExact(worker(coordinator, open).search(request(q, 2, 12).build()), q, 2, 12, allDocs());
      }
    } finally {
      nodes.forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  static Status refusedSearch(String name, Consumer<ServiceConfig> change) throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    List<MemoryServer> nodes = start(name, change);
    try {
      float[] q = randomQuery(1, 22);
      MemoryGrpc.MemoryBlockingStub stub = worker(nodes.get(0), open);
      // what n0 holds alone is answered
      books.assertExact(stub.search(request(q, 1, 5).addDocuments("doc-1").build()), q, 1, 5, List.of("doc-1"));
      return assertThrows(StatusRuntimeException.class, () -> stub.search(request(q, 1, 5).build())).getStatus();
    } finally {
      nodes.forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void withoutTheNodeTokenTheRemotePartIsRefused() throws Exception {
    Status none = refusedSearch("no-token", c -> c.auth.nodeTokenFile = null);
    assertEquals(Status.Code.UNAVAILABLE, none.getCode(), none.toString());
    assertTrue(none.getDescription().contains("UNAUTHENTICATED") && none.getDescription().contains("node n1"),
        none.getDescription());
    Status weak = refusedSearch("search-token", c -> c.auth.nodeTokenFile = searchToken.toString());
    assertEquals(Status.Code.UNAVAILABLE, weak.getCode(), weak.toString());
    assertTrue(weak.getDescription().contains("PERMISSION_DENIED") && weak.getDescription().contains("admin"),
        weak.getDescription());
    Status plain = refusedSearch("no-peer-tls", c -> c.tls.peerCa = null);
    assertEquals(Status.Code.UNAVAILABLE, plain.getCode(), plain.toString());
    assertTrue(plain.getDescription().contains("books/shard-2"), plain.getDescription());
  }
}
