package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.SessionBlocks;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchResponse;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real node with its metrics endpoint on: a known mix of calls, then /metrics scraped over HTTP
 * and parsed; every counter must have moved by exactly what was sent.
 */
class MetricsTest {
  private static final String SVC = "grpc_service=\"longmem.memory.v1.Memory\"";

  @Test
  void countersMoveByWhatWasSent(@TempDir Path tmp) throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    books.writeAs(tmp.resolve("ivf"), "IVF4,PQ4");
    ServiceConfig config = books.config("local", null);
    config.collections = Map.of("books", books.collection.toString(), "ivf", tmp.resolve("ivf").toString());
    config.metricsPort = -1;
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer server = MemoryServer.start(config)) {
      assertTrue(server.metricsPort() > 0, "metrics endpoint not started");
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(server, open);
      Map<String, Double> before = scrape(server.metricsPort());

      int queries = 3;
      int k = 4;
      int exactSearches = 5;
      int approxSearches = 2;
      int refused = 3;
      long answerBytes = 0;
      for (int i = 0; i < exactSearches; i++) {
        float[] q = TestBooks.randomQuery(queries, i);
        SearchResponse r = stub.search(TestBooks.request(q, queries, k).build());
        books.assertExact(r, q, queries, k, TestBooks.allDocs());
        answerBytes += r.getSerializedSize();
      }
      for (int i = 0; i < approxSearches; i++) {
        float[] q = TestBooks.randomQuery(queries, 100 + i);
        // nprobe 4: every list of IVF4 is searched, so every query has its full pool of k x refine
        SearchResponse r = stub.search(TestBooks.request(q, queries, k).clearCollections().addCollections("ivf")
            .setNprobe(4).build());
        answerBytes += r.getSerializedSize();
      }
      for (int i = 0; i < refused; i++) {
        float[] q = TestBooks.randomQuery(queries, 200 + i);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.search(
            TestBooks.request(q, queries, k).clearCollections().addCollections("nope").build()));
        assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
      }
      String session = stub.createSession(CreateSessionRequest.newBuilder().addLayers(2)
          .setHeads(TestBooks.HEADS).setHeadDim(TestBooks.DIM).build()).getSession();
      int tokens = 10;
      float[] kv = new float[TestBooks.HEADS * tokens * TestBooks.DIM];
      Random r = new Random(3);
      for (int i = 0; i < kv.length; i++) {
        kv[i] = (float) r.nextGaussian();
      }
      stub.appendSession(SessionBlocks.toRequest(session, new MemoryBlock(2, "s", new int[] {0, 1, 2, 3, 4, 5, 6,
          7, 8, 9}, TestBooks.HEADS, TestBooks.DIM, kv, kv.clone(), MemoryBlock.Storage.FLOAT32)));
      Map<String, Double> holding = scrape(server.metricsPort());
      stub.dropSession(DropSessionRequest.newBuilder().setSession(session).build());
      Map<String, Double> after = scrape(server.metricsPort());

      int searches = exactSearches + approxSearches;
      assertEquals(searches, delta(before, after, "grpc_server_handled_total", SVC, "grpc_method=\"Search\"",
          "grpc_code=\"OK\""));
      assertEquals(refused, delta(before, after, "grpc_server_handled_total", SVC, "grpc_method=\"Search\"",
          "grpc_code=\"NOT_FOUND\""));
      assertEquals(searches + refused, delta(before, after, "grpc_server_started_total", SVC,
          "grpc_method=\"Search\""));
      assertEquals(searches + refused, delta(before, after, "grpc_server_handling_seconds_count", SVC,
          "grpc_method=\"Search\""));
      for (String m : new String[] {"CreateSession", "AppendSession", "DropSession"}) {
        assertEquals(1, delta(before, after, "grpc_server_handled_total", SVC, "grpc_method=\"" + m + "\"",
            "grpc_code=\"OK\""), m);
      }
      // Flat: one index search per shard (3) and head; IVF: per shard (2) and head, then one re-scoring per head
      int heads = TestBooks.HEADS;
      assertEquals(exactSearches * 3 * heads + approxSearches * 2 * heads,
          delta(before, after, "longmem_search_part_seconds_count", "part=\"faiss\""));
      assertEquals(approxSearches * heads, delta(before, after, "longmem_search_part_seconds_count",
          "part=\"rescore\""));
      assertEquals((long) approxSearches * heads * queries * k * config.refine,
          delta(before, after, "longmem_rescored_candidates_total"));
      assertEquals(searches, delta(before, after, "longmem_search_part_seconds_count", "part=\"answer\""));
      assertEquals(answerBytes, delta(before, after, "longmem_answer_bytes_total"));

      assertEquals(1, value(holding, "longmem_sessions"));
      assertTrue(value(holding, "longmem_session_bytes") >= 2.0 * kv.length * 4, "session bytes");
      assertEquals(0, value(after, "longmem_sessions"));
      assertEquals(0, value(after, "longmem_session_bytes"));
      assertEquals(2, value(after, "longmem_collections"));
      assertEquals(5, value(after, "longmem_shards"));
      assertEquals(0, value(after, "longmem_inflight_bytes"));
      long layerFiles = layerFileBytes(tmp.resolve("books")) + layerFileBytes(tmp.resolve("ivf"));
      long keysAndValues = 2L * 2 * 5 * TestBooks.TOKENS * heads * TestBooks.DIM * 4 * 2; // 2 collections, 2 layers
      double mapped = value(after, "longmem_shard_mapped_bytes");
      assertTrue(mapped >= keysAndValues && mapped <= layerFiles, mapped + " mapped, files " + layerFiles);
      assertTrue(value(after, "longmem_preload_bytes") >= keysAndValues, "preload bytes");
      assertTrue(value(after, "process_resident_memory_bytes") > 0, "resident memory");
      assertTrue(value(after, "jvm_memory_used_bytes", "area=\"heap\"") > 0, "heap");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void offByDefaultAndPortChecked() {
    ServiceConfig c = new ServiceConfig();
    assertTrue(!c.metricsOn());
    c.metricsPort = 70000;
    var e = assertThrows(io.longmem.io.InputException.class, () -> c.validate("conf"));
    assertTrue(e.getMessage().contains("metrics_port"), e.getMessage());
  }

  private static long layerFileBytes(Path collection) throws IOException {
    try (Stream<Path> files = Files.walk(collection)) {
      return files.filter(p -> p.getFileName().toString().matches("layer-\\d+\\.arrow")).mapToLong(p -> {
        try {
          return Files.size(p);
        } catch (IOException e) {
          throw new IllegalStateException(e);
        }
      }).sum();
    }
  }

  /** The text format's samples: "name{labels}" -> value. */
  static Map<String, Double> scrape(int port) throws Exception {
    HttpResponse<String> r = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode());
    Map<String, Double> samples = new HashMap<>();
    for (String line : r.body().split("\n")) {
      if (line.isBlank() || line.startsWith("#")) {
        continue;
      }
      int space = line.lastIndexOf(' ');
      samples.put(line.substring(0, space), Double.parseDouble(line.substring(space + 1)));
    }
    return samples;
  }

  /** The one sample of that name carrying every label given (0 if none, fails if several). */
  static double value(Map<String, Double> samples, String name, String... labels) {
    List<Double> found = new ArrayList<>();
    for (Map.Entry<String, Double> e : samples.entrySet()) {
      String key = e.getKey();
      int brace = key.indexOf('{');
      if (!(brace < 0 ? key : key.substring(0, brace)).equals(name)) {
        continue;
      }
      boolean all = true;
      for (String l : labels) {
        all &= key.contains(l);
      }
      if (all) {
        found.add(e.getValue());
      }
    }
    assertTrue(found.size() <= 1, name + " " + List.of(labels) + ": several samples");
    return found.isEmpty() ? 0 : found.get(0);
  }

  private static long delta(Map<String, Double> before, Map<String, Double> after, String name, String... labels) {
    return Math.round(value(after, name, labels) - value(before, name, labels));
  }
}
