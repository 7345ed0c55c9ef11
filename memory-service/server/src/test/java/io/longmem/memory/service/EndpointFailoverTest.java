package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryEndpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The client of several nodes, {@code grpc://H1:P1,H2:P2}: a dead address is passed over, and a
 * node that answers UNAVAILABLE (here: one whose only replica of the shards is gone) has its
 * Search and ListCollections sent again to another node. Real nodes on loopback.
 */
class EndpointFailoverTest {
  @TempDir
  static Path tmp;
  static TestBooks books;
  /** serves every shard */
  static MemoryServer good;
  /** holds no shard and its one replica is dead: every search is UNAVAILABLE */
  static MemoryServer orphan;
  static int dead;

  @BeforeAll
  static void start() throws Exception {
    books = TestBooks.write(tmp.resolve("books"));
    good = MemoryServer.start(books.config("good", null));
    dead = ClusterTest.freePort();
    int orphanPort = ClusterTest.freePort();
    Path cluster = tmp.resolve("orphan.json");
    Files.writeString(cluster, "{\"replication\": 1, \"nodes\": ["
        + "{\"id\": \"o\", \"address\": \"127.0.0.1:" + orphanPort + "\", \"shards\": {}},"
        + "{\"id\": \"d\", \"address\": \"127.0.0.1:" + dead + "\", \"shards\": {\"books\": "
        + "[\"shard-0\", \"shard-1\", \"shard-2\"]}}]}");
    ServiceConfig c = books.config("o", cluster.toString());
    c.port = orphanPort;
    orphan = MemoryServer.start(c);
  }

  @AfterAll
  static void stop() {
    good.close();
    orphan.close();
  }

  static void searches(MemoryEndpoint e, int n, long seed) {
    for (int i = 0; i < n; i++) {
      float[] q = randomQuery(1, seed + i);
      books.assertExact(e.stub().withDeadlineAfter(30, TimeUnit.SECONDS).search(request(q, 1, 5).build()), q, 1, 5,
          allDocs());
    }
  }

  @Test
  void aDeadFirstAddressIsPassedOver() {
    try (MemoryEndpoint e = MemoryEndpoint.remote("grpc://127.0.0.1:" + dead + ",127.0.0.1:" + good.port())) {
      assertEquals(allDocs(), e.documents("books"));
      searches(e, 5, 10);
    }
  }

  @Test
  void anUnavailableNodeIsRetriedOnAnother() {
    // the orphan alone refuses: the client must not hide that
    StatusRuntimeException alone = assertThrows(StatusRuntimeException.class, () -> {
      try (MemoryEndpoint e = MemoryEndpoint.remote("grpc://127.0.0.1:" + orphan.port())) {
        searches(e, 1, 20);
      }
    });
    assertEquals(Status.Code.UNAVAILABLE, alone.getStatus().getCode());
    // round_robin: every other call reaches the orphan first (pick_first stays on one live node)
    try (MemoryEndpoint e = MemoryEndpoint.remote("grpc://127.0.0.1:" + orphan.port() + ",127.0.0.1:"
        + good.port() + "?lb=round_robin")) {
      searches(e, 20, 30);
      assertEquals(allDocs(), e.documents("books"));
    }
  }

  @Test
  void badAddressesAreOneLineErrors() {
    for (String bad : new String[] {"grpc://", "grpc://h:1,", "grpc://h:0", "grpc://h:1,h2", "grpc://h:1?lb=random",
        "grpc://h:1,h:2?hedge_ms=-1", "http://h:1"}) {
      InputException e = assertThrows(InputException.class, () -> MemoryEndpoint.remote(bad).close(), bad);
      assertTrue(e.getMessage().contains(bad) && !e.getMessage().contains("\n"), e.getMessage());
    }
  }
}
