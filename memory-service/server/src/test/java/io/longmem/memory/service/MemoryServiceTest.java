package io.longmem.memory.service;

import io.longmem.memory.api.Wire;
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
import io.longmem.memory.shard.TokenMajor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real gRPC server (and a small cluster) on loopback over real shards. */
class MemoryServiceTest {
  static final int HEADS = TestBooks.HEADS;
  static final int DIM = TestBooks.DIM;
  static final int TOKENS = TestBooks.TOKENS;
  static final ShardLayout LAYOUT = TestBooks.LAYOUT;

  @TempDir
  static Path tmp;
  static TestBooks books;

  @BeforeAll
  static void writeCollection() throws IOException {
    books = TestBooks.write(tmp.resolve("books"));
  }

  static ServiceConfig config(String node, String cluster) {
    return books.config(node, cluster);
  }

  @Test
  void exactSearchEqualsBruteForce() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("local", null))) {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(3, 1);
      books.assertExact(stub.search(TestBooks.request(q, 3, 10).build()), q, 3, 10, TestBooks.allDocs());
      // restricted to two documents in two shards
      SearchResponse r = stub.search(TestBooks.request(q, 3, 7).addDocuments("doc-1").addDocuments("doc-4").build());
      books.assertExact(r, q, 3, 7, List.of("doc-1", "doc-4"));
      var list = stub.listCollections(ListCollectionsRequest.getDefaultInstance());
      assertEquals(5 * TOKENS, list.getCollections(0).getTokens());
      var health = HealthGrpc.newBlockingStub(open.get(0)).check(HealthCheckRequest.newBuilder()
          .setService(MemoryGrpc.SERVICE_NAME).build());
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, health.getStatus());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  /** float16_pairs: the same answer with keys and values as float16 (each the float32 one, rounded). */
  @Test
  void float16PairsHalveTheAnswer() throws Exception {
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("local", null))) {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(2, 5);
      SearchResponse full = stub.search(TestBooks.request(q, 2, 9).build());
      SearchResponse half = stub.search(TestBooks.request(q, 2, 9).setFloat16Pairs(true).build());
      assertEquals(full.getHeadsCount(), half.getHeadsCount());
      for (int h = 0; h < full.getHeadsCount(); h++) {
        var a = full.getHeads(h);
        var b = half.getHeads(h);
        assertEquals(a.getSlots(), b.getSlots());
        assertEquals(a.getScores(), b.getScores());
        assertEquals(a.getKeys().size() / 2, b.getKeys().size());
        float[] fk = Wire.floats(a.getKeys(), "keys");
        float[] hk = Wire.halfs(b.getKeys(), "keys");
        float[] fv = Wire.floats(a.getValues(), "values");
        float[] hv = Wire.halfs(b.getValues(), "values");
        for (int i = 0; i < fk.length; i++) {
          assertEquals(io.longmem.memory.api.Float16.toFloat(org.apache.arrow.memory.util.Float16.toFloat16(fk[i])), hk[i]);
          assertEquals(io.longmem.memory.api.Float16.toFloat(org.apache.arrow.memory.util.Float16.toFloat16(fv[i])), hv[i]);
          assertTrue(Math.abs(fk[i] - hk[i]) <= Math.abs(fk[i]) * 1e-3 + 1e-7, "key " + i);
        }
      }
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
          TokenMajor.append(sw, doc, pos, books.keys.get(doc), books.values.get(doc));
        }
        e = sw.finish();
      }
      w.commit(List.of(e));
    }
    ServiceConfig c = config("local", null);
    c.collections = Map.of("books", pq.toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(2, 21);
      // every list probed, 64 x k candidates re-scored: exactly the brute-force top-k, exact scores
      books.assertExact(stub.search(TestBooks.request(q, 2, 5).setNprobe(4).setRefine(64).build()), q, 2, 5, List.of("doc-0", "doc-1"));
      // without re-scoring the scores are PQ estimates: not all equal to q.k
      Hits raw = Protos.fromResponse(stub.search(TestBooks.request(q, 2, 5).setNprobe(4).setRefine(1).build()), HEADS, 2, 5, DIM);
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
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(2, 2);
      expect(stub, TestBooks.request(q, 2, 5).setHeads(3), Status.Code.INVALID_ARGUMENT, "heads");
      expect(stub, TestBooks.request(TestBooks.randomQuery(2, 2), 2, 5).setHeadDim(8).setQueries(4), Status.Code.INVALID_ARGUMENT,
          "head_dim");
      float[] nan = q.clone();
      nan[DIM + 3] = Float.NaN;
      expect(stub, TestBooks.request(nan, 2, 5), Status.Code.INVALID_ARGUMENT, "query: NaN at head 0, query 1, component 3");
      expect(stub, TestBooks.request(q, 2, 0), Status.Code.INVALID_ARGUMENT, "k must be");
      expect(stub, TestBooks.request(q, 2, 65), Status.Code.INVALID_ARGUMENT, "k must be");
      expect(stub, TestBooks.request(q, 2, 5).clearCollections().addCollections("nope"), Status.Code.NOT_FOUND,
          "unknown collection nope");
      expect(stub, TestBooks.request(q, 2, 5).setLayer(7), Status.Code.INVALID_ARGUMENT, "layer 7");
      expect(stub, TestBooks.request(q, 2, 5).addDocuments("doc-9"), Status.Code.NOT_FOUND, "doc-9");
      expect(stub, TestBooks.request(q, 2, 5).setQuery(ByteString.copyFrom(new byte[7])), Status.Code.INVALID_ARGUMENT,
          "query: 7 bytes");
      float[] big = TestBooks.randomQuery(2100, 3); // its choices alone exceed the 4 MiB answer limit
      expect(stub, TestBooks.request(big, 2100, 64), Status.Code.RESOURCE_EXHAUSTED, "refused before searching");
      float[] many = TestBooks.randomQuery(1000, 4); // its worst case (every choice a distinct pair) does too
      expect(stub, TestBooks.request(many, 1000, 64), Status.Code.RESOURCE_EXHAUSTED, "refused before searching");
      expect(stub, TestBooks.request(q, 2, 5).clearCollections(), Status.Code.INVALID_ARGUMENT, "name at least one");
      expect(stub, TestBooks.request(q, 2, 5).addSessions("session-x"), Status.Code.NOT_FOUND, "unknown session");
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
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      String id = stub.createSession(CreateSessionRequest.newBuilder().addLayers(2).setHeads(HEADS).setHeadDim(DIM)
          .build()).getSession();
      // one token whose key is huge along the query's direction: it must win every query of head 0
      float[] q = TestBooks.randomQuery(1, 5);
      float[] k = new float[HEADS * DIM];
      float[] v = new float[HEADS * DIM];
      for (int d = 0; d < DIM; d++) {
        k[d] = q[d] * 1000;
        v[d] = d;
      }
      var appended = stub.appendSession(AppendSessionRequest.newBuilder().setSession(id).setLayer(2).setTokens(1)
          .setKeys(Wire.bytes(k, k.length)).setValues(Wire.bytes(v, v.length)).addPositions(77).build());
      assertEquals(1, appended.getTokens());
      SearchResponse r = stub.search(TestBooks.request(q, 1, 3).addSessions(id).build());
      Hits hits = Protos.fromResponse(r, HEADS, 1, 3, DIM);
      int slot = hits.head(0).slots()[0];
      assertEquals(id, hits.documents().get(hits.head(0).pairDocument()[slot]));
      assertEquals(77, hits.head(0).pairPosition()[slot]);
      assertEquals(5f, hits.head(0).values()[slot * DIM + 5], 0f);
      var bad = assertThrows(StatusRuntimeException.class, () -> stub.appendSession(AppendSessionRequest.newBuilder()
          .setSession(id).setLayer(2).setTokens(2).setKeys(Wire.bytes(k, k.length))
          .setValues(Wire.bytes(v, v.length)).build()));
      assertEquals(Status.Code.INVALID_ARGUMENT, bad.getStatus().getCode());
      stub.dropSession(DropSessionRequest.newBuilder().setSession(id).build());
      expect(stub, TestBooks.request(q, 1, 3).addSessions(id), Status.Code.NOT_FOUND, "unknown session");
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
    c.collections = Map.of("books", books.collection.toString(), "broken", broken.toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(1, 6);
      books.assertExact(stub.search(TestBooks.request(q, 1, 4).build()), q, 1, 4, TestBooks.allDocs());
      // the client learns the collection and the reason, not the server's paths (the node logs those)
      expect(stub, TestBooks.request(q, 1, 4).clearCollections().addCollections("broken"), Status.Code.FAILED_PRECONDITION,
          "collection broken was refused at load: ");
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.search(TestBooks.request(q, 1, 4)
          .clearCollections().addCollections("broken").build()));
      assertTrue(!e.getStatus().getDescription().contains(tmp.toString()), e.getStatus().getDescription());
      assertTrue(s.node().refused().get("broken").contains(broken.toString()), "the node keeps the path");
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  @Test
  void aBadConfigNamesTheField() throws IOException {
    Path conf = tmp.resolve("bad-preload.json");
    Files.writeString(conf, "{\"preload_limit_mb\": -5}");
    var e = assertThrows(IllegalArgumentException.class, () -> ServiceConfig.load(conf));
    assertTrue(e.getMessage().contains("preload_limit_mb") && e.getMessage().contains(conf.toString()), e.getMessage());
  }
}
