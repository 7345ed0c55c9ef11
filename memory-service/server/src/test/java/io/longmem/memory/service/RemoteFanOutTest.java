package io.longmem.memory.service;

import static io.longmem.memory.service.TestBooks.allDocs;
import static io.longmem.memory.service.TestBooks.randomQuery;
import static io.longmem.memory.service.TestBooks.request;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.grpc.SearchShardsRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A coordinator asks the other nodes at once, not one after another: each of two remote nodes
 * answers only once both have been asked (a gate of two), which a coordinator calling them in turn
 * would never get past in time.
 */
class RemoteFanOutTest {
  @TempDir
  Path tmp;

  /** Delays searchShards until {@code gate} opens, then answers as the node would. */
  private static final class Gate extends MemoryGrpc.MemoryImplBase {
    private final MemoryGrpcService node;
    private final CountDownLatch gate;
    private final AtomicInteger opened;

    Gate(MemoryGrpcService node, CountDownLatch gate, AtomicInteger opened) {
      this.node = node;
      this.gate = gate;
      this.opened = opened;
    }

    @Override
    public void searchShards(SearchShardsRequest request, StreamObserver<SearchResponse> out) {
      gate.countDown();
      try {
        if (gate.await(3, TimeUnit.SECONDS)) {
          opened.incrementAndGet();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      node.searchShards(request, out);
    }
  }

  @Test
  void remoteNodesAreAskedConcurrently() throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    int[] ports = {ClusterTest.freePort(), ClusterTest.freePort(), ClusterTest.freePort()};
    Path file = tmp.resolve("cluster.json");
    Files.writeString(file, "{\"replication\": 1, \"nodes\": ["
        + "{\"id\": \"n0\", \"address\": \"127.0.0.1:" + ports[0] + "\", \"shards\": {\"books\": [\"shard-0\"]}},"
        + "{\"id\": \"n1\", \"address\": \"127.0.0.1:" + ports[1] + "\", \"shards\": {\"books\": [\"shard-1\"]}},"
        + "{\"id\": \"n2\", \"address\": \"127.0.0.1:" + ports[2] + "\", \"shards\": {\"books\": [\"shard-2\"]}}]}");
    List<AutoCloseable> open = new ArrayList<>();
    List<ManagedChannel> channels = new ArrayList<>();
    try {
      ServiceConfig c0 = books.config("n0", file.toString());
      c0.port = ports[0];
      MemoryServer coordinator = MemoryServer.start(c0);
      open.add(coordinator);
      CountDownLatch gate = new CountDownLatch(2);
      AtomicInteger opened = new AtomicInteger();
      for (int i = 1; i <= 2; i++) {
        MemoryNode node = new MemoryNode(books.config("n" + i, file.toString()));
        open.add(0, node);
        Server server = NettyServerBuilder.forPort(ports[i])
            .addService(new Gate(new MemoryGrpcService(node), gate, opened)).build().start();
        open.add(0, () -> server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
      }
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(coordinator, channels);
      float[] q = randomQuery(2, 40);
      books.assertExact(stub.search(request(q, 2, 9).build()), q, 2, 9, allDocs());
      assertEquals(2, opened.get(), "both remote nodes were asked before either answered");
    } finally {
      for (AutoCloseable o : open) {
        o.close();
      }
      channels.forEach(ManagedChannel::shutdownNow);
    }
  }
}
