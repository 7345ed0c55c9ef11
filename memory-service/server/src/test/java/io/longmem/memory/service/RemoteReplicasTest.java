package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.grpc.SearchShardsRequest;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import io.longmem.memory.grpc.MemoryGrpc;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three nodes on loopback, replication 2 ({n0: s0 s1}, {n1: s1 s2}, {n2: s2 s0}), n0 coordinating:
 * its remote shard-2 goes to n1 first. With n1 unresponsive (it accepts connections and never
 * answers) or stopped, every answer is still exact and no search waits for the node-to-node
 * deadline (5 s here); n1 is marked down, and taken back once it serves again.
 */
class RemoteReplicasTest {
  static final String[][] SHARDS = {{"shard-0", "shard-1"}, {"shard-1", "shard-2"}, {"shard-2", "shard-0"}};
  @TempDir
  static Path tmp;
  static TestBooks books;

  @BeforeAll
  static void collection() throws IOException {
    books = TestBooks.write(tmp.resolve("books"));
  }

  /** A cluster file for nodes at these ports. */
  static Path clusterFile(String name, int[] ports) throws IOException {
    StringBuilder nodes = new StringBuilder();
    for (int i = 0; i < ports.length; i++) {
      nodes.append(i == 0 ? "" : ",").append("{\"id\": \"n").append(i).append("\", \"address\": \"127.0.0.1:")
          .append(ports[i]).append("\", \"shards\": {\"books\": [\"").append(String.join("\", \"", SHARDS[i]))
          .append("\"]}}");
    }
    Path file = tmp.resolve(name + ".json");
    Files.writeString(file, "{\"replication\": 2, \"nodes\": [" + nodes + "]}");
    return file;
  }

  static MemoryServer node(int i, int[] ports, Path cluster, Consumer<ServiceConfig> tune) throws IOException {
    ServiceConfig c = books.config("n" + i, cluster.toString());
    c.port = ports[i];
    tune.accept(c);
    return MemoryServer.start(c);
  }

  /** Searches through {@code stub}, each checked against brute force; the slowest, in ms. */
  static long searches(MemoryGrpc.MemoryBlockingStub stub, int n, long seed) {
    long slowest = 0;
    for (int i = 0; i < n; i++) {
      float[] q = randomQuery(1, seed + i);
      long t0 = System.nanoTime();
      var r = stub.withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS).search(request(q, 1, 6).build());
      slowest = Math.max(slowest, (System.nanoTime() - t0) / 1_000_000);
      books.assertExact(r, q, 1, 6, allDocs());
    }
    return slowest;
  }

  static boolean awaitHealth(MemoryServer s, String node, boolean up, long ms) throws InterruptedException {
    ClusterConfig.Node n = new ClusterConfig.Node();
    n.id = node;
    long end = System.nanoTime() + ms * 1_000_000;
    while (System.nanoTime() < end) {
      if (s.node().health().up(n) == up) {
        return true;
      }
      Thread.sleep(20);
    }
    return false;
  }

  /** Accepts connections and never answers: a node whose link or process hangs. */
  static final class BlackHole implements AutoCloseable {
    final ServerSocket socket = new ServerSocket(0);
    final List<Socket> accepted = new ArrayList<>();
    final Thread thread = new Thread(() -> {
      try {
        while (true) {
          accepted.add(socket.accept());
        }
      } catch (IOException closed) {
        // done
      }
    }, "black-hole");

    BlackHole() throws IOException {
      thread.setDaemon(true);
      thread.start();
    }

    @Override
    public void close() throws IOException {
      socket.close();
      for (Socket s : accepted) {
        s.close();
      }
    }
  }

  @Test
  void anUnresponsiveReplicaCostsAHedgeNotTheDeadline() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (BlackHole hole = new BlackHole()) {
      int[] ports = {ClusterTest.freePort(), hole.socket.getLocalPort(), ClusterTest.freePort()};
      Path cluster = clusterFile("hole", ports);
      List<MemoryServer> nodes = new ArrayList<>();
      try {
        nodes.add(node(0, ports, cluster, c -> {}));
        nodes.add(node(2, ports, cluster, c -> {}));
        MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(nodes.get(0), open);
        long first = searches(stub, 5, 200); // n1 still counts as up: each waits one hedge_ms
        assertTrue(awaitHealth(nodes.get(0), "n1", false, 3000), "n1 never marked down");
        long later = searches(stub, 20, 300);
        System.out.printf("unresponsive n1: slowest of the first 5 searches %d ms, of the next 20 %d ms%n",
            first, later);
        assertTrue(first < 2000 && later < 2000, "a search waited " + Math.max(first, later)
            + " ms: for the deadline (5000 ms), not a hedge (100 ms)");
      } finally {
        nodes.forEach(MemoryServer::close);
        open.forEach(ManagedChannel::shutdownNow);
      }
    }
  }

  @Test
  void aStoppedReplicaIsDownThenTakenBackWhenItServesAgain() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    int[] ports = {ClusterTest.freePort(), ClusterTest.freePort(), ClusterTest.freePort()};
    Path cluster = clusterFile("stopped", ports);
    MemoryServer[] nodes = new MemoryServer[3];
    try {
      for (int i = 0; i < 3; i++) {
        nodes[i] = node(i, ports, cluster, c -> c.healthIntervalMs = 200);
      }
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(nodes[0], open);
      searches(stub, 3, 400);
      nodes[1].close();
      long during = searches(stub, 10, 500);
      assertTrue(awaitHealth(nodes[0], "n1", false, 2000), "n1 never marked down");
      nodes[1] = node(1, ports, cluster, c -> c.healthIntervalMs = 200);
      assertTrue(awaitHealth(nodes[0], "n1", true, 3000), "n1 never taken back");
      // n1 is now the only replica of shard-2 besides n0's view of n2: stop n2, n1 must answer
      nodes[2].close();
      nodes[2] = null;
      long after = searches(stub, 10, 600);
      System.out.printf("stopped n1: slowest search %d ms; after it came back and n2 stopped %d ms%n", during, after);
      assertFalse(during >= 2000 || after >= 2000, "a search waited for the deadline");
    } finally {
      Arrays.stream(nodes).filter(n -> n != null).forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  /** Answers searchShards only after 3 s, noting when the caller cancels the call. */
  private static final class Slow extends MemoryGrpc.MemoryImplBase {
    final MemoryGrpcService node;
    final CountDownLatch cancelled = new CountDownLatch(1);

    Slow(MemoryGrpcService node) {
      this.node = node;
    }

    @Override
    public void searchShards(SearchShardsRequest request, StreamObserver<SearchResponse> out) {
      Context.current().addListener(c -> cancelled.countDown(), Runnable::run);
      try {
        cancelled.await(3, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      node.searchShards(request, out);
    }
  }

  @Test
  void aSlowReplicaIsOvertakenAndItsCallCancelled() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    int[] ports = {ClusterTest.freePort(), ClusterTest.freePort(), ClusterTest.freePort()};
    Path cluster = clusterFile("slow", ports);
    List<MemoryServer> nodes = new ArrayList<>();
    MemoryNode slowNode = new MemoryNode(books.config("n1", cluster.toString()));
    Slow slow = new Slow(new MemoryGrpcService(slowNode));
    Server n1 = NettyServerBuilder.forPort(ports[1]).addService(slow).build().start();
    try {
      nodes.add(node(0, ports, cluster, c -> {}));
      nodes.add(node(2, ports, cluster, c -> {}));
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(nodes.get(0), open);
      long t0 = System.nanoTime();
      searches(stub, 1, 700); // shard-2 goes to n1 first: slow, but up
      long ms = (System.nanoTime() - t0) / 1_000_000;
      boolean cancelled = slow.cancelled.await(1, TimeUnit.SECONDS);
      System.out.printf("slow n1: answered in %d ms by n2; n1's call cancelled: %s%n", ms, cancelled);
      assertTrue(ms < 2000, "the search waited " + ms + " ms for the slow replica");
      assertTrue(cancelled, "the slow replica's call was not cancelled once n2 answered");
    } finally {
      nodes.forEach(MemoryServer::close);
      open.forEach(ManagedChannel::shutdownNow);
      n1.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      slowNode.close();
    }
  }
}
