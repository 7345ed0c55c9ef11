package io.longmem.memory.service;

import io.longmem.memory.api.Wire;
import io.longmem.memory.api.MemoryBlock;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.memory.shard.TokenMajor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/** A small real collection ("books") with its data kept in memory, and checks against brute force. */
final class TestBooks {
  static final int HEADS = 4;
  static final int DIM = 16;
  static final ShardLayout LAYOUT = new ShardLayout(List.of(1, 2), HEADS, DIM, MemoryBlock.Storage.FLOAT32);
  static final String[][] SHARDS = {{"doc-0", "doc-1"}, {"doc-2"}, {"doc-3", "doc-4"}};
  static final int TOKENS = 900;

  final Path collection;
  /** per document and memory layer, keys and values [tokens, heads, dim] */
  final Map<String, float[][]> keys = new HashMap<>();
  final Map<String, float[][]> values = new HashMap<>();

  private TestBooks(Path collection) {
    this.collection = collection;
  }

  /** Writes the collection "books": 5 documents of 900 tokens in 3 shards, Flat indexes. */
  static TestBooks write(Path collection) throws IOException {
    TestBooks b = new TestBooks(collection);
    b.writeCollection();
    return b;
  }

  private void writeCollection() throws IOException {
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
            TokenMajor.append(sw, doc, pos, k, v);
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
  }

  /**
   * The same documents as another collection at {@code dir}, in two shards, indexed by {@code
   * factory} ("HNSW32", "IVF4,PQ4", ...).
   */
  void writeAs(Path dir, String factory) throws IOException {
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:test", LAYOUT, "float32", factory)
        .trainingRows(500)) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      String[][] shards = {{"doc-0", "doc-1", "doc-2"}, {"doc-3", "doc-4"}};
      for (int s = 0; s < shards.length; s++) {
        try (ShardWriter sw = w.newShard("s" + s)) {
          for (String doc : shards[s]) {
            int[] pos = new int[TOKENS];
            Arrays.setAll(pos, t -> t);
            TokenMajor.append(sw, doc, pos, keys.get(doc), values.get(doc));
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
  }

  ServiceConfig config(String node, String cluster) {
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
        .setHeadDim(DIM).setQuery(Wire.bytes(q, q.length)).setK(k);
  }

  /** Brute force over every token of the named documents: (doc, position, score) best first. */
  List<Object[]> truth(float[] q, int queries, int head, int query, int layerIndex, List<String> docs) {
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
  void assertExact(SearchResponse r, float[] q, int queries, int k, List<String> docs) {
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
}
