package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.memory.shard.TokenMajor;
import io.longmem.memory.api.Float16;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The candidate pool ({@link Candidates}) without gRPC or FAISS: shards of a float32 and a float16
 * collection propose hand-made lists (estimates unrelated to the true scores, ties, lists cut
 * short with -1), and the answer must be the brute-force top-k by the stored keys of the best
 * {@code pool} estimates (ties at the cut-off taken in shard order, then rank order).
 */
class CandidatesTest {
  static final int HEADS = 2;
  static final int DIM = 8;
  static final int LAYER = 1;
  static final int ROWS_PER_DOC = 60;

  @TempDir
  Path tmp;

  /** per document, keys and values [rows, heads, dim] as written */
  final Map<String, float[]> keys = new HashMap<>();
  final Map<String, float[]> values = new HashMap<>();

  /** Writes a collection of shards, each of the given documents (ROWS_PER_DOC rows each). */
  private MemoryCollection collection(String name, MemoryBlock.Storage storage, String[][] shards, Random r)
      throws IOException {
    Path dir = tmp.resolve(name);
    ShardLayout layout = new ShardLayout(List.of(LAYER), HEADS, DIM, storage);
    String dtype = storage == MemoryBlock.Storage.FLOAT16 ? "float16" : "float32";
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:test", layout, dtype, "Flat")) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int s = 0; s < shards.length; s++) {
        try (ShardWriter sw = w.newShard(name + "-" + s)) {
          for (String doc : shards[s]) {
            int[] pos = new int[ROWS_PER_DOC];
            Arrays.setAll(pos, t -> 100 + t);
            float[] k = new float[ROWS_PER_DOC * HEADS * DIM];
            float[] v = new float[k.length];
            for (int i = 0; i < k.length; i++) {
              k[i] = (float) r.nextGaussian();
              v[i] = (float) r.nextGaussian();
            }
            keys.put(doc, k);
            values.put(doc, v);
            TokenMajor.append(sw, doc, pos, new float[][] {k}, new float[][] {v});
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
    return MemoryCollection.open(dir, "sha256:test", false, false);
  }

  private static float stored(float x, boolean half) {
    return half ? Float16.toFloat(org.apache.arrow.memory.util.Float16.toFloat16(x)) : x;
  }

  /** A proposal: shard s, its rank, the row, the estimate. */
  record Proposal(int shard, int rank, long row, float estimate) {}

  @Test
  void thePoolRescoredIsTheBruteForceTopK() throws IOException {
    Random r = new Random(5);
    try (MemoryCollection f32 = collection("f32", MemoryBlock.Storage.FLOAT32,
        new String[][] {{"a", "b"}, {"c"}}, r);
        MemoryCollection f16 = collection("f16", MemoryBlock.Storage.FLOAT16, new String[][] {{"d"}, {"e", "f"}}, r)) {
      List<MemoryCollection.Shard> mixed = new ArrayList<>(f32.shards());
      mixed.addAll(f16.shards());
      int trials = 0;
      for (List<MemoryCollection.Shard> shards : List.of(mixed, f32.shards(), f16.shards())) {
        for (int t = 0; t < 40; t++, trials++) {
          check(shards, r, t % 2 == 0, "trial " + trials);
        }
      }
    }
  }

  private void check(List<MemoryCollection.Shard> shards, Random r, boolean ties, String where) {
    int queries = 1 + r.nextInt(3);
    int k = 1 + r.nextInt(6);
    int pool = k + r.nextInt(3 * k + 1);
    float[] query = new float[HEADS * queries * DIM];
    for (int i = 0; i < query.length; i++) {
      query[i] = (float) r.nextGaussian();
    }
    SearchQuery q = new SearchQuery(List.of("x"), List.of(), LAYER, HEADS, queries, DIM, query, k, List.of(), 0, 0, 0);
    Candidates c = new Candidates(shards, q, pool);
    List<List<List<Proposal>>> proposed = new ArrayList<>(); // [head][query] -> proposals
    for (int h = 0; h < HEADS; h++) {
      int listK = 1 + r.nextInt(2 * k + 2);
      FaissIndex.Result[] byShard = new FaissIndex.Result[shards.size()];
      List<List<Proposal>> perQuery = new ArrayList<>();
      for (int i = 0; i < queries; i++) {
        perQuery.add(new ArrayList<>());
      }
      for (int s = 0; s < shards.size(); s++) {
        float[] scores = new float[queries * listK];
        long[] ids = new long[queries * listK];
        Arrays.fill(ids, -1);
        Arrays.fill(scores, Float.NEGATIVE_INFINITY);
        for (int i = 0; i < queries; i++) {
          int n = r.nextInt(listK + 1); // the rest of the list is -1: the shard found fewer
          List<Long> rows = new ArrayList<>();
          for (long row = 0; row < shards.get(s).rows(); row++) {
            rows.add(row);
          }
          java.util.Collections.shuffle(rows, r);
          float[] estimates = new float[n];
          for (int j = 0; j < n; j++) {
            estimates[j] = ties ? r.nextInt(3) : (float) r.nextGaussian(); // unrelated to the true scores
          }
          Arrays.sort(estimates);
          for (int j = 0; j < n; j++) {
            ids[i * listK + j] = rows.get(j);
            scores[i * listK + j] = estimates[n - 1 - j];
            perQuery.get(i).add(new Proposal(s, j, rows.get(j), estimates[n - 1 - j]));
          }
        }
        byShard[s] = new FaissIndex.Result(queries, listK, scores, ids);
      }
      proposed.add(perQuery);
      c.rescoreHead(h, byShard);
    }
    Hits hits = c.hits();
    for (int h = 0; h < HEADS; h++) {
      Hits.Head head = hits.head(h);
      float[][] kv = head.keysAndValues();
      int[] pairDoc = head.pairDocument();
      int[] pairPos = head.pairPosition();
      Set<String> winners = new HashSet<>();
      for (int i = 0; i < queries; i++) {
        // the pool: the best estimates, ties at the cut-off in shard order, then rank
        List<Proposal> all = new ArrayList<>(proposed.get(h).get(i));
        all.sort(Comparator.comparingDouble((Proposal p) -> -p.estimate()).thenComparingInt(Proposal::shard)
            .thenComparingInt(Proposal::rank));
        List<Proposal> inPool = all.subList(0, Math.min(pool, all.size()));
        // re-scored by brute force over the keys as stored
        List<Object[]> scored = new ArrayList<>();
        for (Proposal p : inPool) {
          MemoryCollection.Shard shard = shards.get(p.shard());
          String doc = shard.documentOf(p.row());
          int t = (int) (p.row() - shard.documents().get(shard.documentIndexOf(p.row())).begin());
          double s = 0;
          for (int d = 0; d < DIM; d++) {
            s += (double) query[(h * queries + i) * DIM + d]
                * stored(keys.get(doc)[(t * HEADS + h) * DIM + d], shard.isFloat16());
          }
          scored.add(new Object[] {doc, t, s, shard.isFloat16()});
        }
        scored.sort((a, b) -> Double.compare((double) b[2], (double) a[2]));
        for (int j = 0; j < k; j++) {
          String at = where + " head " + h + " query " + i + " rank " + j;
          int slot = head.slots()[i * k + j];
          if (j >= scored.size()) {
            assertEquals(-1, slot, at + ": fewer candidates than k");
            assertEquals(Float.NEGATIVE_INFINITY, head.scores()[i * k + j], at);
            continue;
          }
          Object[] e = scored.get(j);
          String doc = (String) e[0];
          int t = (int) e[1];
          boolean half = (boolean) e[3];
          assertEquals(doc, hits.documents().get(pairDoc[slot]), at);
          assertEquals(100 + t, pairPos[slot], at);
          assertEquals((double) e[2], head.scores()[i * k + j], 1e-4, at);
          float[] wantK = new float[DIM];
          float[] wantV = new float[DIM];
          for (int d = 0; d < DIM; d++) {
            wantK[d] = stored(keys.get(doc)[(t * HEADS + h) * DIM + d], half);
            wantV[d] = stored(values.get(doc)[(t * HEADS + h) * DIM + d], half);
          }
          assertArrayEquals(wantK, Arrays.copyOfRange(kv[0], slot * DIM, (slot + 1) * DIM), at);
          assertArrayEquals(wantV, Arrays.copyOfRange(kv[1], slot * DIM, (slot + 1) * DIM), at);
          winners.add(doc + "/" + t);
        }
      }
      assertEquals(winners.size(), head.pairs(), where + " head " + h + ": one pair per distinct winner");
    }
    assertEquals(new HashSet<>(hits.documents()).size(), hits.documents().size(), where + ": documents listed once");
  }

  @Test
  void proposalsAreAtLeastKAndAtMostThePool() {
    for (int k = 1; k < 40; k += 3) {
      for (int pool = k; pool < 20 * k; pool += k) {
        for (int shards = 1; shards < 12; shards++) {
          int p = LocalShards.proposals(k, pool, shards);
          assertEquals(Math.min(pool, Math.max(k, 4 * (int) Math.ceil(pool / (double) shards))), p,
              k + "/" + pool + "/" + shards);
        }
      }
    }
  }
}
