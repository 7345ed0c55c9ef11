package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.AppendSessionRequest;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.ListCollectionsRequest;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real gRPC server (and a small cluster) on loopback over real shards. */
class MemoryServiceTest {
  static final int HEADS = 4;
  static final int DIM = 16;
  static final ShardLayout LAYOUT = new ShardLayout(List.of(1, 2), HEADS, DIM, ShardLayout.Storage.FLOAT32);
  static final String[][] SHARDS = {{"doc-0", "doc-1"}, {"doc-2"}, {"doc-3", "doc-4"}};
  static final int TOKENS = 900;

  @TempDir
  static Path tmp;
  static Path collection;
  /** every token: document, position, per layer key and value [heads, dim] */
  static Map<String, float[][]> keys = new HashMap<>();
  static Map<String, float[][]> values = new HashMap<>();

  @BeforeAll
  static void writeCollection() throws IOException {
    collection = tmp.resolve("books");
    Random r = new Random(42);
    try (CollectionWriter w = CollectionWriter.create(collection, "sha256:test", LAYOUT, "float32", "Flat")) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int s = 0; s < SHARDS.length; s++) {
        try (ShardWriter sw = w.newShard("shard-" + s)) {
          for (String doc : SHARDS[s]) {
            int[] pos = new int[TOKENS];
            float[][] k = new float[2][TOKENS * HEADS * DIM];
            float[][] v = new float[2][TOKENS * HEADS * DIM];
            for (int i = 0; i < TOKENS; i++) {
              pos[i] = i;
            }
            for (int l = 0; l < 2; l++) {
              for (int i = 0; i < k[l].length; i++) {
                k[l][i] = (float) r.nextGaussian();
                v[l][i] = (float) r.nextGaussian();
              }
            }
            keys.put(doc, k);
            values.put(doc, v);
            sw.append(doc, pos, k, v);
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
  }

  static ServiceConfig config(String node, String cluster) {
    ServiceConfig c = new ServiceConfig();
    c.port = 0;
    c.nodeId = node;
    c.collections = Map.of("books", collection.toString());
    c.cluster = cluster;
    c.maxK = 64;
    c.maxMessageMb = 4;
    c.remoteDeadlineMs = 5000;
    return c;
  }

  static MemoryGrpc.MemoryBlockingStub client(MemoryServer s, List<ManagedChannel> open) {
    ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    open.add(ch);
    return MemoryGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  static float[] randomQuery(int queries, long seed) {
    Random r = new Random(seed);
    float[] q = new float[HEADS * queries * DIM];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    return q;
  }

  static SearchRequest.Builder request(float[] q, int queries, int k) {
    return SearchRequest.newBuilder().addCollections("books").setLayer(2).setHeads(HEADS).setQueries(queries)
        .setHeadDim(DIM).setQuery(Protos.bytes(q, q.length)).setK(k);
  }

  /** Brute force over every token of the named documents: (doc, position, score) best first. */
  static List<Object[]> truth(float[] q, int queries, int head, int query, int layerIndex, List<String> docs) {
    List<Object[]> all = new ArrayList<>();
    for (String doc : docs) {
      float[] k = keys.get(doc)[layerIndex];
      for (int t = 0; t < TOKENS; t++) {
        double s = 0;
        for (int d = 0; d < DIM; d++) {
          s += q[(head * queries + query) * DIM + d] * k[(t * HEADS + head) * DIM + d];
        }
        all.add(new Object[] {doc, t, s});
      }
    }
    all.sort((a, b) -> Double.compare((double) b[2], (double) a[2]));
    return all;
  }

  static List<String> allDocs() {
    return Arrays.stream(SHARDS).flatMap(Arrays::stream).toList();
  }

  /** Checks an answer against brute force: same pairs, scores, keys and values. */
  static void assertExact(SearchResponse r, float[] q, int queries, int k, List<String> docs) {
    Hits hits = Protos.fromResponse(r, HEADS, queries, k, DIM);
    for (int h = 0; h < HEADS; h++) {
      Hits.Head head = hits.head(h);
      float[] hk = head.keys();
      float[] hv = head.values();
      for (int i = 0; i < queries; i++) {
        List<Object[]> t = truth(q, queries, h, i, 1, docs);
        for (int j = 0; j < k; j++) {
          int slot = head.slots()[i * k + j];
          String doc = hits.documents().get(head.pairDocument()[slot]);
          int pos = head.pairPosition()[slot];
          assertEquals(t.get(j)[0], doc, "head " + h + " query " + i + " rank " + j);
          assertEquals(t.get(j)[1], pos, "head " + h + " query " + i + " rank " + j);
          assertEquals((double) t.get(j)[2], head.scores()[i * k + j], 1e-3);
          float[] storedK = keys.get(doc)[1];
          float[] storedV = values.get(doc)[1];
          for (int d = 0; d < DIM; d++) {
            assertEquals(storedK[(pos * HEADS + h) * DIM + d], hk[slot * DIM + d], 0f);
            assertEquals(storedV[(pos * HEADS + h) * DIM + d], hv[slot * DIM + d], 0f);
          }
        }
      }
    }
  }

  @Test
  void exactSearchEqualsBruteForce() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("local", null))) {
      MemoryGrpc.MemoryBlockingStub stub = client(s, open);
      float[] q = randomQuery(3, 1);
      assertExact(stub.search(request(q, 3, 10).build()), q, 3, 10, allDocs());
      // restricted to two documents in two shards
      SearchResponse r = stub.search(request(q, 3, 7).addDocuments("doc-1").addDocuments("doc-4").build());
      assertExact(r, q, 3, 7, List.of("doc-1", "doc-4"));
      var list = stub.listCollections(ListCollectionsRequest.getDefaultInstance());
      assertEquals(5 * TOKENS, list.getCollections(0).getTokens());
      var health = HealthGrpc.newBlockingStub(open.get(0)).check(HealthCheckRequest.newBuilder()
          .setService(MemoryGrpc.SERVICE_NAME).build());
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, health.getStatus());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  /** An approximate (IVF-PQ) collection, re-scored with the stored keys, answers exactly when all lists are probed. */
  @Test
  void approximateIndexesAreRescoredWithTheStoredKeys() throws Exception {
    Path pq = tmp.resolve("books-pq");
    try (CollectionWriter w = CollectionWriter.create(pq, "sha256:test", LAYOUT, "float32", "IVF4,PQ4").trainingRows(500)) {
      Manifest.ShardEntry e;
      try (ShardWriter sw = w.newShard("s")) {
        for (String doc : new String[] {"doc-0", "doc-1"}) {
          int[] pos = new int[TOKENS];
          for (int i = 0; i < TOKENS; i++) {
            pos[i] = i;
          }
          sw.append(doc, pos, keys.get(doc), values.get(doc));
        }
        e = sw.finish();
      }
      w.commit(List.of(e));
    }
    ServiceConfig c = config("local", null);
    c.collections = Map.of("books", pq.toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub stub = client(s, open);
      float[] q = randomQuery(2, 21);
      // every list probed, 64 x k candidates re-scored: exactly the brute-force top-k, exact scores
      assertExact(stub.search(request(q, 2, 5).setNprobe(4).setRefine(64).build()), q, 2, 5, List.of("doc-0", "doc-1"));
      // without re-scoring the scores are PQ estimates: not all equal to q.k
      Hits raw = Protos.fromResponse(stub.search(request(q, 2, 5).setNprobe(4).setRefine(1).build()), HEADS, 2, 5, DIM);
      float[] rk = raw.head(0).keys();
      int off = 0;
      for (int j = 0; j < 5; j++) {
        int slot = raw.head(0).slots()[j];
        double dot = 0;
        for (int d = 0; d < DIM; d++) {
          dot += q[d] * rk[slot * DIM + d];
        }
        off += Math.abs(dot - raw.head(0).scores()[j]) > 1e-3 ? 1 : 0;
      }
      assertTrue(off > 0, "PQ scores are estimates");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void badRequestsGetTheRightStatus() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("local", null))) {
      MemoryGrpc.MemoryBlockingStub stub = client(s, open);
      float[] q = randomQuery(2, 2);
      expect(stub, request(q, 2, 5).setHeads(3), Status.Code.INVALID_ARGUMENT, "heads");
      expect(stub, request(randomQuery(2, 2), 2, 5).setHeadDim(8).setQueries(4), Status.Code.INVALID_ARGUMENT,
          "head_dim");
      float[] nan = q.clone();
      nan[DIM + 3] = Float.NaN;
      expect(stub, request(nan, 2, 5), Status.Code.INVALID_ARGUMENT, "query: NaN at head 0, query 1, component 3");
      expect(stub, request(q, 2, 0), Status.Code.INVALID_ARGUMENT, "k must be");
      expect(stub, request(q, 2, 65), Status.Code.INVALID_ARGUMENT, "k must be");
      expect(stub, request(q, 2, 5).clearCollections().addCollections("nope"), Status.Code.NOT_FOUND,
          "unknown collection nope");
      expect(stub, request(q, 2, 5).setLayer(7), Status.Code.INVALID_ARGUMENT, "layer 7");
      expect(stub, request(q, 2, 5).addDocuments("doc-9"), Status.Code.NOT_FOUND, "doc-9");
      expect(stub, request(q, 2, 5).setQuery(ByteString.copyFrom(new byte[7])), Status.Code.INVALID_ARGUMENT,
          "query: 7 bytes");
      float[] big = randomQuery(2100, 3); // its choices alone exceed the 4 MiB answer limit
      expect(stub, request(big, 2100, 64), Status.Code.RESOURCE_EXHAUSTED, "heads x queries x k");
      float[] many = randomQuery(1000, 4); // fits until the distinct pairs are counted
      expect(stub, request(many, 1000, 64), Status.Code.RESOURCE_EXHAUSTED, "the answer holds");
      expect(stub, request(q, 2, 5).clearCollections(), Status.Code.INVALID_ARGUMENT, "name at least one");
      expect(stub, request(q, 2, 5).addSessions("session-x"), Status.Code.NOT_FOUND, "unknown session");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  static void expect(MemoryGrpc.MemoryBlockingStub stub, SearchRequest.Builder r, Status.Code code, String text) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.search(r.build()));
    assertEquals(code, e.getStatus().getCode(), e.getStatus().toString());
    assertTrue(e.getStatus().getDescription().contains(text), e.getStatus().getDescription());
  }

  @Test
  void sessionsAreSearchedWithCollections() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("local", null))) {
      MemoryGrpc.MemoryBlockingStub stub = client(s, open);
      String id = stub.createSession(CreateSessionRequest.newBuilder().addLayers(2).setHeads(HEADS).setHeadDim(DIM)
          .build()).getSession();
      // one token whose key is huge along the query's direction: it must win every query of head 0
      float[] q = randomQuery(1, 5);
      float[] k = new float[HEADS * DIM];
      float[] v = new float[HEADS * DIM];
      for (int d = 0; d < DIM; d++) {
        k[d] = q[d] * 1000;
        v[d] = d;
      }
      var appended = stub.appendSession(AppendSessionRequest.newBuilder().setSession(id).setLayer(2).setTokens(1)
          .setKeys(Protos.bytes(k, k.length)).setValues(Protos.bytes(v, v.length)).addPositions(77).build());
      assertEquals(1, appended.getTokens());
      SearchResponse r = stub.search(request(q, 1, 3).addSessions(id).build());
      Hits hits = Protos.fromResponse(r, HEADS, 1, 3, DIM);
      int slot = hits.head(0).slots()[0];
      assertEquals(id, hits.documents().get(hits.head(0).pairDocument()[slot]));
      assertEquals(77, hits.head(0).pairPosition()[slot]);
      assertEquals(5f, hits.head(0).values()[slot * DIM + 5], 0f);
      var bad = assertThrows(StatusRuntimeException.class, () -> stub.appendSession(AppendSessionRequest.newBuilder()
          .setSession(id).setLayer(2).setTokens(2).setKeys(Protos.bytes(k, k.length))
          .setValues(Protos.bytes(v, v.length)).build()));
      assertEquals(Status.Code.INVALID_ARGUMENT, bad.getStatus().getCode());
      stub.dropSession(DropSessionRequest.newBuilder().setSession(id).build());
      expect(stub, request(q, 1, 3).addSessions(id), Status.Code.NOT_FOUND, "unknown session");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void aDamagedCollectionIsRefusedAndTheNodeServesTheRest() throws Exception {
    Path broken = tmp.resolve("broken");
    Files.createDirectories(broken);
    Files.writeString(broken.resolve("manifest.json"), "{\"format_version\": 1}");
    ServiceConfig c = config("local", null);
    c.collections = Map.of("books", collection.toString(), "broken", broken.toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub stub = client(s, open);
      float[] q = randomQuery(1, 6);
      assertExact(stub.search(request(q, 1, 4).build()), q, 1, 4, allDocs());
      expect(stub, request(q, 1, 4).clearCollections().addCollections("broken"), Status.Code.FAILED_PRECONDITION,
          broken.toString());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }
}
