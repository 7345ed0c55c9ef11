package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.common.util.concurrent.ListenableFuture;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code longmem serve} in its own JVM gets SIGTERM while searches are in flight: they finish
 * with the right answers, new calls are refused UNAVAILABLE, and the process exits 0.
 */
class GracefulShutdownTest {
  private static final ShardLayout LAYOUT = new ShardLayout(List.of(1), 2, 8, MemoryBlock.Storage.FLOAT32);
  private static final int TOKENS = 60_000; // per shard: a search of 1024 queries takes a while on one thread
  private static final int QUERIES = 1024;
  private static final int K = 8;

  @Test
  void sigtermDrainsInFlightSearchesAndExitsZero(@TempDir Path tmp) throws Exception {
    Path collection = writeCollection(tmp.resolve("big"));
    Path conf = tmp.resolve("node.json");
    Files.writeString(conf, "{\"port\": 0, \"metrics_port\": -1, \"search_threads\": 1, \"shutdown_grace_ms\": 60000,"
        + " \"collections\": {\"big\": \"" + collection + "\"}}");
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("-Xmx1g");
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (a.startsWith("--add-opens") || a.startsWith("-Dio.netty") || a.startsWith("-Djdk.reflect")) {
        cmd.add(a);
      }
    }
    cmd.add("-Dlog4j2.configurationFile=" + Path.of("..", "conf", "log4j2.properties").toAbsolutePath().normalize());
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "io.longmem.cli.Main", "serve", "--conf",
        conf.toString()));
    Path out = tmp.resolve("serve.log"); // a file, not a pipe: the node's last lines are there once it exited
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile()).start();
    Log log = new Log(out);
    List<ManagedChannel> open = new ArrayList<>();
    try {
      int port = Integer.parseInt(await(log, Pattern.compile("listening on 127\\.0\\.0\\.1:(\\d+)"), p));
      int metrics = Integer.parseInt(await(log, Pattern.compile("metrics on http://127\\.0\\.0\\.1:(\\d+)/metrics"), p));
      ManagedChannel ch = channel(port, open);
      MemoryGrpc.MemoryFutureStub stub = MemoryGrpc.newFutureStub(ch);
      List<SearchRequest> requests = new ArrayList<>();
      List<ListenableFuture<SearchResponse>> inFlight = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        requests.add(request(i));
        inFlight.add(stub.withDeadlineAfter(120, TimeUnit.SECONDS).search(requests.get(i)));
      }
      // the node has all three (one search thread: they run one after another)
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (started(metrics) < 3) {
        assertTrue(System.nanoTime() < until, "the searches did not start: " + log.text());
        Thread.sleep(20);
      }
      p.destroy(); // SIGTERM
      await(log, Pattern.compile("(SIGTERM): draining"), p);
      await(log, Pattern.compile("(refusing new calls)"), p); // logged once the port is closed
      StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () -> MemoryGrpc
          .newBlockingStub(channel(port, open)).withDeadlineAfter(10, TimeUnit.SECONDS).search(request(9)));
      assertEquals(Status.Code.UNAVAILABLE, refused.getStatus().getCode(), refused.toString());
      assertFalse(inFlight.stream().allMatch(f -> f.isDone()), "the searches finished before SIGTERM: nothing drained");
      List<SearchResponse> answers = new ArrayList<>();
      for (ListenableFuture<SearchResponse> f : inFlight) {
        answers.add(f.get(120, TimeUnit.SECONDS));
      }
      StatusRuntimeException late = assertThrows(StatusRuntimeException.class, () -> MemoryGrpc.newBlockingStub(ch)
          .withDeadlineAfter(10, TimeUnit.SECONDS).search(request(10)));
      assertEquals(Status.Code.UNAVAILABLE, late.getStatus().getCode(), late.toString());
      assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the node did not exit: " + log.text());
      assertEquals(0, p.exitValue(), log.text());
      assertTrue(log.text().contains("memory node local stopped"), log.text());

      // the same searches on a node of this JVM that nobody stops
      ServiceConfig c = new ServiceConfig();
      c.port = 0;
      c.collections.put("big", collection.toString());
      try (MemoryServer reference = MemoryServer.start(c)) {
        MemoryGrpc.MemoryBlockingStub ref = MemoryGrpc.newBlockingStub(channel(reference.port(), open));
        for (int i = 0; i < requests.size(); i++) {
          SearchResponse want = ref.withDeadlineAfter(120, TimeUnit.SECONDS).search(requests.get(i));
          assertEquals(want, answers.get(i), "search " + i + " answered differently while draining");
        }
      }
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
      p.destroyForcibly();

    }
  }

  private static ManagedChannel channel(int port, List<ManagedChannel> open) {
    ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
        .maxInboundMessageSize(64 << 20).build();
    open.add(ch);
    return ch;
  }

  private static SearchRequest request(long seed) {
    Random r = new Random(seed);
    float[] q = new float[LAYOUT.heads() * QUERIES * LAYOUT.headDim()];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    return SearchRequest.newBuilder().addCollections("big").setLayer(1).setHeads(LAYOUT.heads()).setQueries(QUERIES)
        .setHeadDim(LAYOUT.headDim()).setQuery(Wire.bytes(q, q.length)).setK(K).build();
  }

  /** Two shards of one document each, random keys and values, Flat indexes. */
  private static Path writeCollection(Path dir) throws Exception {
    Random r = new Random(11);
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:drain", LAYOUT, "float32", "Flat")) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int s = 0; s < 2; s++) {
        try (ShardWriter sw = w.newShard("shard-" + s)) {
          int[] pos = new int[TOKENS];
          float[] k = new float[LAYOUT.heads() * TOKENS * LAYOUT.headDim()];
          float[] v = new float[k.length];
          for (int i = 0; i < TOKENS; i++) {
            pos[i] = i;
          }
          for (int i = 0; i < k.length; i++) {
            k[i] = (float) r.nextGaussian();
            v[i] = (float) r.nextGaussian();
          }
          String doc = "doc-" + s;
          sw.append(doc, List.of(new MemoryBlock(1, doc, pos, LAYOUT.heads(), LAYOUT.headDim(), k, v,
              LAYOUT.storage())));
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
    return dir;
  }

  /** The node's output, read from its file. */
  private record Log(Path file) {
    String text() {
      try {
        return Files.exists(file) ? Files.readString(file, StandardCharsets.UTF_8) : "";
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }
  }

  /** Waits for a line of the node's output matching {@code pattern}; returns its first group. */
  private static String await(Log log, Pattern pattern, Process p) throws InterruptedException {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (System.nanoTime() < until) {
      boolean alive = p.isAlive();
      Matcher m = pattern.matcher(log.text());
      if (m.find()) {
        return m.group(1);
      }
      if (!alive) {
        break;
      }
      Thread.sleep(20);
    }
    throw new AssertionError("no line matching " + pattern + (p.isAlive() ? "" : " (exit code " + p.exitValue() + ")")
        + " in:\n" + log.text());
  }

  /** grpc_server_started_total of Search, scraped from the node's /metrics. */
  private static long started(int port) throws Exception {
    HttpResponse<String> r = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString());
    for (String line : r.body().split("\n")) {
      if (line.startsWith("grpc_server_started_total{") && line.contains("grpc_method=\"Search\"")) {
        return Math.round(Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1)));
      }
    }
    assertNotNull(r.body());
    return 0;
  }
}
