package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.memory.shard.TokenMajor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 12: a search whose caller has gone (deadline passed, call cancelled) stops instead of
 * computing to the end, on the node it was sent to and on the node it asked for remote shards.
 * Real nodes on loopback over a Flat collection large enough that one big search takes a few
 * hundred ms; {@link Work#STEPS} counts the head/shard steps that ran.
 */
class CancellationTest {
  static final int HEADS = 4;
  static final int DIM = 16;
  static final int SHARDS = 4;
  static final int TOKENS = 20_000;
  static final int QUERIES = 1024;
  static final int K = 16;

  @TempDir
  static Path tmp;
  static final List<MemoryServer> SERVERS = new ArrayList<>();
  static final List<ManagedChannel> OPEN = new ArrayList<>();
  static ScheduledExecutorService timer;

  @BeforeAll
  static void write() throws Exception {
    timer = Executors.newSingleThreadScheduledExecutor();
    ShardLayout layout = new ShardLayout(List.of(1), HEADS, DIM, MemoryBlock.Storage.FLOAT32);
    Random r = new Random(7);
    try (CollectionWriter w = CollectionWriter.create(tmp.resolve("big"), "sha256:test", layout, "float32", "Flat")) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int s = 0; s < SHARDS; s++) {
        try (ShardWriter sw = w.newShard("shard-" + s)) {
          int[] pos = new int[TOKENS];
          float[][] k = new float[1][TOKENS * HEADS * DIM];
          float[][] v = new float[1][TOKENS * HEADS * DIM];
          for (int i = 0; i < TOKENS; i++) {
            pos[i] = i;
          }
          for (int i = 0; i < k[0].length; i++) {
            k[0][i] = (float) r.nextGaussian();
            v[0][i] = (float) r.nextGaussian();
          }
          TokenMajor.append(sw, "doc-" + s, pos, k, v);
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
  }

  @AfterAll
  static void stop() {
    OPEN.forEach(ManagedChannel::shutdownNow);
    SERVERS.forEach(MemoryServer::close);
    timer.shutdownNow();
  }

  static ServiceConfig config(String node, String cluster, int port) {
    ServiceConfig c = new ServiceConfig();
    c.port = port;
    c.nodeId = node;
    c.collections = Map.of("big", tmp.resolve("big").toString());
    c.cluster = cluster;
    c.maxK = K;
    c.maxQueries = QUERIES;
    c.maxMessageMb = 256;
    c.searchThreads = 2;
    c.remoteDeadlineMs = 30_000;
    return c;
  }

  static MemoryGrpc.MemoryBlockingStub client(MemoryServer s) {
    ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext()
        .maxInboundMessageSize(256 << 20).build();
    OPEN.add(ch);
    return MemoryGrpc.newBlockingStub(ch);
  }

  static SearchRequest request(int queries, int k, long seed) {
    Random r = new Random(seed);
    float[] q = new float[HEADS * queries * DIM];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    return SearchRequest.newBuilder().addCollections("big").setLayer(1).setHeads(HEADS).setQueries(queries)
        .setHeadDim(DIM).setQuery(Wire.bytes(q, q.length)).setK(k).build();
  }

  /** Steps a full big search runs, and how long it takes. */
  static long[] fullSearch(MemoryGrpc.MemoryBlockingStub stub) {
    long before = Work.STEPS.get();
    long t0 = System.nanoTime();
    stub.withDeadlineAfter(60, TimeUnit.SECONDS).search(request(QUERIES, K, 1));
    return new long[] {Work.STEPS.get() - before, (System.nanoTime() - t0) / 1_000_000};
  }

  /**
   * The steps run by a big search whose caller goes after {@code afterMs} (its deadline passes,
   * or the caller cancels), counted once the node has had the time to finish it twice over, and
   * the latency of a small search sent the moment the big one failed ({@code smallSteps}: its own
   * steps, one per shard and head as for any search, not counted).
   */
  static long[] abandoned(MemoryGrpc.MemoryBlockingStub stub, boolean cancel, long afterMs, long fullMs,
      long smallSteps) throws Exception {
    long before = Work.STEPS.get();
    StatusRuntimeException e;
    if (cancel) {
      Context.CancellableContext c = Context.current().withCancellation();
      timer.schedule(() -> c.cancel(null), afterMs, TimeUnit.MILLISECONDS);
      e = assertThrows(StatusRuntimeException.class,
          () -> c.call(() -> stub.withDeadlineAfter(60, TimeUnit.SECONDS).search(request(QUERIES, K, 2))));
      assertEquals(Status.Code.CANCELLED, e.getStatus().getCode());
    } else {
      e = assertThrows(StatusRuntimeException.class,
          () -> stub.withDeadlineAfter(afterMs, TimeUnit.MILLISECONDS).search(request(QUERIES, K, 3)));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
    }
    long t0 = System.nanoTime();
    stub.withDeadlineAfter(60, TimeUnit.SECONDS).search(request(1, 1, 4));
    long next = (System.nanoTime() - t0) / 1_000_000;
    Thread.sleep(Math.max(500, 2 * fullMs));
    return new long[] {Work.STEPS.get() - before - smallSteps, next};
  }

  @Test
  void anAbandonedSearchStopsOnItsNode() throws Exception {
    MemoryServer node = MemoryServer.start(config("local", null, 0));
    SERVERS.add(node);
    MemoryGrpc.MemoryBlockingStub stub = client(node);
    fullSearch(stub); // warm up
    long[] full = fullSearch(stub);
    System.out.printf("full search: %d steps in %d ms%n", full[0], full[1]);
    assertTrue(full[1] >= 150, "the search must take long enough to be abandoned midway: " + full[1] + " ms");
    for (boolean cancel : new boolean[] {false, true}) {
      long[] gone = abandoned(stub, cancel, full[1] / 5, full[1], full[0]);
      System.out.printf("%s after %d ms: %d of %d steps ran; the next small search took %d ms%n",
          cancel ? "cancelled" : "deadline", full[1] / 5, gone[0], full[0], gone[1]);
      assertTrue(gone[0] < full[0] * 2 / 3, (cancel ? "cancelled" : "timed-out")
          + " search ran " + gone[0] + " steps of " + full[0]);
    }
  }

  /**
   * The coordinator's first replica is gone, so the remote shards go to the second from the node's
   * pool (outside the incoming call's context): the call there must still stop with the caller.
   */
  @Test
  void anAbandonedSearchStopsOnTheReplicaItAsked() throws Exception {
    int coordinatorPort = ClusterTest.freePort();
    int deadPort = ClusterTest.freePort();
    int replicaPort = ClusterTest.freePort();
    StringBuilder all = new StringBuilder();
    for (int s = 0; s < SHARDS; s++) {
      all.append(s == 0 ? "" : ",").append("\"shard-").append(s).append('"');
    }
    Path file = tmp.resolve("cluster.json");
    Files.writeString(file, "{\"replication\": 2, \"nodes\": ["
        + "{\"id\": \"c\", \"address\": \"127.0.0.1:" + coordinatorPort + "\", \"shards\": {}},"
        + "{\"id\": \"dead\", \"address\": \"127.0.0.1:" + deadPort + "\", \"shards\": {\"big\": [" + all + "]}},"
        + "{\"id\": \"r\", \"address\": \"127.0.0.1:" + replicaPort + "\", \"shards\": {\"big\": [" + all + "]}}]}");
    MemoryServer replica = MemoryServer.start(config("r", file.toString(), replicaPort));
    SERVERS.add(replica);
    MemoryServer coordinator = MemoryServer.start(config("c", file.toString(), coordinatorPort));
    SERVERS.add(coordinator);
    MemoryGrpc.MemoryBlockingStub stub = client(coordinator);
    fullSearch(stub);
    long[] full = fullSearch(stub);
    System.out.printf("remote full search: %d steps in %d ms%n", full[0], full[1]);
    assertTrue(full[1] >= 150, "the search must take long enough to be abandoned midway: " + full[1] + " ms");
    for (boolean cancel : new boolean[] {false, true}) {
      long[] gone = abandoned(stub, cancel, full[1] / 5, full[1], full[0]);
      System.out.printf("remote %s after %d ms: %d of %d steps ran; the next small search took %d ms%n",
          cancel ? "cancelled" : "deadline", full[1] / 5, gone[0], full[0], gone[1]);
      assertTrue(gone[0] < full[0] * 2 / 3, (cancel ? "cancelled" : "timed-out")
          + " search ran " + gone[0] + " steps of " + full[0] + " on the replica");
    }
  }
}
