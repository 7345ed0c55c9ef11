package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.grpc.MemoryGrpc;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Several nodes on loopback, each serving part of the shards, as a cluster file says. */
class ClusterTest {
  @TempDir
  static Path tmp;

  static TestBooks books;

  @BeforeAll
  static void collection() throws IOException {
    books = TestBooks.write(tmp.resolve("books"));
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** Starts one node per entry of {@code shards} (which shards it holds), with a shared cluster file. */
  static List<MemoryServer> start(String name, int replication, String[][] shards) throws IOException {
    int[] ports = new int[shards.length];
    StringBuilder nodes = new StringBuilder();
    for (int i = 0; i < shards.length; i++) {
      ports[i] = freePort();
      nodes.append(i == 0 ? "" : ",").append("{\"id\": \"n").append(i).append("\", \"address\": \"127.0.0.1:")
          .append(ports[i]).append("\", \"shards\": {\"books\": [");
      for (int j = 0; j < shards[i].length; j++) {
        nodes.append(j == 0 ? "" : ",").append('"').append(shards[i][j]).append('"');
      }
      nodes.append("]}}");
    }
    Path file = tmp.resolve(name + ".json");
    Files.writeString(file, "{\"replication\": " + replication + ", \"nodes\": [" + nodes + "]}");
    List<MemoryServer> servers = new ArrayList<>();
    for (int i = 0; i < shards.length; i++) {
      ServiceConfig c = books.config("n" + i, file.toString());
      c.port = ports[i];
      c.metricsPort = -1; // every node its own registry and endpoint, in one JVM
      servers.add(MemoryServer.start(c));
      assertEquals(shards[i].length, servers.get(i).node().collections().get("books").shards().size());
    }
    return servers;
  }

  @Test
  void twoNodesAnswerLikeOneMergedIndex() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    List<MemoryServer> nodes = start("two", 1, new String[][] {{"shard-0", "shard-1"}, {"shard-2"}});
    try {
      float[] q = randomQuery(2, 11);
      for (MemoryServer coordinator : nodes) {
        MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(coordinator, open);
        books.assertExact(stub.search(request(q, 2, 12).build()), q, 2, 12, allDocs());
        books.assertExact(stub.search(request(q, 2, 5).addDocuments("doc-3").build()), q, 2, 5, List.of("doc-3"));
      }
      // with replication 1, losing a node loses its shards: the answer says which, never partial
      MemoryGrpc.MemoryBlockingStub first = TestBooks.client(nodes.get(0), open);
      nodes.get(1).close();
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> first.search(request(q, 2, 5).build()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("books/shard-2"), e.getStatus().getDescription());
      // a search that does not need the lost shard still works
      books.assertExact(first.search(request(q, 2, 5).addDocuments("doc-1").build()), q, 2, 5, List.of("doc-1"));
      // n0 asked n1 for shard-2 twice, then once more when n1 was gone (no other replica)
      Map<String, Double> m = MetricsTest.scrape(nodes.get(0).metricsPort());
      assertEquals(2, MetricsTest.value(m, "longmem_remote_calls_total", "node=\"n1\"", "outcome=\"ok\""));
      assertEquals(1, MetricsTest.value(m, "longmem_remote_calls_total", "node=\"n1\"", "outcome=\"unavailable\""));
      assertEquals(1, MetricsTest.value(m, "longmem_remote_failovers_total"));
      assertEquals(2, MetricsTest.value(m, "longmem_shards"));
    } finally {
      nodes.forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void aNodeKilledMidRunLosesNoQueryWithReplicationTwo() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    List<MemoryServer> nodes = start("three", 2,
        new String[][] {{"shard-0", "shard-1"}, {"shard-1", "shard-2"}, {"shard-2", "shard-0"}});
    try {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(nodes.get(0), open);
      int answered = 0;
      for (int i = 0; i < 40; i++) {
        if (i == 10) {
          nodes.get(1).close(); // node n1 goes away; shard-2 is still on n2
        }
        float[] q = randomQuery(1, 100 + i);
        books.assertExact(stub.search(request(q, 1, 6).build()), q, 1, 6, allDocs());
        answered++;
      }
      assertEquals(40, answered);
    } finally {
      nodes.forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
    }
  }
}
