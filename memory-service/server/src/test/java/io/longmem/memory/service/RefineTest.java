package io.longmem.memory.service;

import io.longmem.memory.api.MemoryBlock;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.ManagedChannel;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.memory.shard.TokenMajor;
import io.longmem.memory.api.Float16;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Approximate search re-scored on the node, over several shards of two collections, one stored as
 * float16 and one as float32, searched in one call: with every list probed and a pool holding
 * every candidate, the answer is the brute-force top-k of the stored keys (float16 ones rounded),
 * and its keys and values are the stored ones, as float32 or as float16.
 */
class RefineTest {
  static final int HEADS = TestBooks.HEADS;
  static final int DIM = TestBooks.DIM;
  static final int TOKENS = TestBooks.TOKENS;

  @TempDir
  Path tmp;

  @Test
  void rescoredAnswersAcrossShardsAndStoragesAreExact() throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    write(books, tmp.resolve("pq32"), MemoryBlock.Storage.FLOAT32, new String[][] {{"doc-0", "doc-1"}, {"doc-2"}});
    write(books, tmp.resolve("pq16"), MemoryBlock.Storage.FLOAT16, new String[][] {{"doc-3"}, {"doc-4"}});
    ServiceConfig c = books.config("local", null);
    c.collections = Map.of("pq32", tmp.resolve("pq32").toString(), "pq16", tmp.resolve("pq16").toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      int queries = 3;
      int k = 7;
      float[] q = TestBooks.randomQuery(queries, 77);
      for (boolean float16 : new boolean[] {false, true}) {
        SearchResponse r = stub.search(TestBooks.request(q, queries, k).clearCollections().addCollections("pq32")
            .addCollections("pq16").setNprobe(4).setRefine(64).setFloat16Pairs(float16).build());
        check(books, Protos.fromResponse(r, HEADS, queries, k, DIM, float16), q, queries, k, float16);
      }
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }

  private static void write(TestBooks books, Path dir, MemoryBlock.Storage storage, String[][] shards)
      throws IOException {
    ShardLayout layout = new ShardLayout(TestBooks.LAYOUT.layers(), HEADS, DIM, storage);
    String dtype = storage == MemoryBlock.Storage.FLOAT16 ? "float16" : "float32";
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:test", layout, dtype, "IVF4,PQ4").trainingRows(500)) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int i = 0; i < shards.length; i++) {
        try (ShardWriter sw = w.newShard("s" + i)) {
          for (String doc : shards[i]) {
            int[] pos = new int[TOKENS];
            Arrays.setAll(pos, t -> t);
            TokenMajor.append(sw, doc, pos, books.keys.get(doc), books.values.get(doc));
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
  }

  private static float stored(float x, boolean half) {
    return half ? Float16.toFloat(org.apache.arrow.memory.util.Float16.toFloat16(x)) : x;
  }

  private static void check(TestBooks books, Hits hits, float[] q, int queries, int k, boolean float16Answer) {
    List<String> docs = TestBooks.allDocs();
    for (int h = 0; h < HEADS; h++) {
      Hits.Head head = hits.head(h);
      float[] keys = head.keys();
      float[] values = head.values();
      for (int i = 0; i < queries; i++) {
        // brute force over the keys as stored (doc-3 and doc-4 as float16)
        List<Object[]> all = new ArrayList<>();
        for (String doc : docs) {
          boolean half = doc.equals("doc-3") || doc.equals("doc-4");
          float[] key = books.keys.get(doc)[1];
          for (int t = 0; t < TOKENS; t++) {
            double score = 0;
            for (int d = 0; d < DIM; d++) {
              score += q[(h * queries + i) * DIM + d] * stored(key[(t * HEADS + h) * DIM + d], half);
            }
            all.add(new Object[] {doc, t, score});
          }
        }
        all.sort((a, b) -> Double.compare((double) b[2], (double) a[2]));
        for (int j = 0; j < k; j++) {
          String where = "head " + h + " query " + i + " rank " + j + (float16Answer ? " (float16 pairs)" : "");
          int slot = head.slots()[i * k + j];
          String doc = hits.documents().get(head.pairDocument()[slot]);
          int pos = head.pairPosition()[slot];
          assertEquals(all.get(j)[0], doc, where);
          assertEquals(all.get(j)[1], pos, where);
          assertEquals((double) all.get(j)[2], head.scores()[i * k + j], 1e-4, where);
          boolean half = float16Answer || doc.equals("doc-3") || doc.equals("doc-4");
          for (int d = 0; d < DIM; d++) {
            int at = (pos * HEADS + h) * DIM + d;
            assertEquals(stored(books.keys.get(doc)[1][at], half), keys[slot * DIM + d], 0f, where);
            assertEquals(stored(books.values.get(doc)[1][at], half), values[slot * DIM + d], 0f, where);
          }
        }
      }
    }
  }
}
