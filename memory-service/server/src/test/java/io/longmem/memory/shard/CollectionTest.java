package io.longmem.memory.shard;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Real Arrow files and FAISS indexes written, committed, reopened and damaged. */
class CollectionTest {
  private static final ShardLayout LAYOUT = new ShardLayout(List.of(1, 2), 4, 16, MemoryBlock.Storage.FLOAT32);
  private static final String MODEL = "sha256:model-a";

  /** One document's memory: keys/values per layer [n, heads, dim]. */
  private record Doc(String id, int[] positions, float[][] keys, float[][] values) {}

  private static Doc doc(String id, int n, long seed) {
    Random r = new Random(seed);
    int[] pos = new int[n];
    float[][] k = new float[2][n * LAYOUT.width()];
    float[][] v = new float[2][n * LAYOUT.width()];
    for (int i = 0; i < n; i++) {
      pos[i] = i;
    }
    for (int l = 0; l < 2; l++) {
      for (int i = 0; i < k[l].length; i++) {
        k[l][i] = (float) r.nextGaussian();
        v[l][i] = (float) r.nextGaussian();
      }
    }
    return new Doc(id, pos, k, v);
  }

  private static Path write(Path dir, String factory, List<List<Doc>> shards) throws IOException {
    try (CollectionWriter w = CollectionWriter.create(dir, MODEL, LAYOUT, "bfloat16", factory).trainingRows(300)) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      int s = 0;
      for (List<Doc> docs : shards) {
        try (ShardWriter sw = w.newShard("shard-" + s++)) {
          for (Doc d : docs) {
            // in two appends, as a job writes window by window
            int half = d.positions().length / 2;
            TokenMajor.append(sw, d.id(), java.util.Arrays.copyOf(d.positions(), half), slice(d.keys(), 0, half),
                slice(d.values(), 0, half));
            TokenMajor.append(sw, d.id(), java.util.Arrays.copyOfRange(d.positions(), half, d.positions().length),
                slice(d.keys(), half, d.positions().length), slice(d.values(), half, d.positions().length));
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
    return dir;
  }

  private static float[][] slice(float[][] a, int from, int to) {
    float[][] r = new float[a.length][];
    for (int l = 0; l < a.length; l++) {
      r[l] = java.util.Arrays.copyOfRange(a[l], from * LAYOUT.width(), to * LAYOUT.width());
    }
    return r;
  }

  /** A layer's keys or values of a shard, [rows, heads, dim], read row by row. */
  private static float[] all(MemoryCollection.Shard s, int layer, boolean keys) {
    int dim = LAYOUT.headDim();
    float[] out = new float[(int) s.rows() * LAYOUT.width()];
    for (long r = 0; r < s.rows(); r++) {
      for (int h = 0; h < LAYOUT.heads(); h++) {
        int at = (int) ((r * LAYOUT.heads() + h) * dim);
        if (keys) {
          s.readKey(layer, r, h, out, at);
        } else {
          s.readValue(layer, r, h, out, at);
        }
      }
    }
    return out;
  }

  /** A document's memory as the model hands it over: one head-major block [heads, n, dim] per layer. */
  private static List<MemoryBlock> blocks(Doc d) {
    int n = d.positions().length;
    int heads = LAYOUT.heads();
    int dim = LAYOUT.headDim();
    List<MemoryBlock> blocks = new ArrayList<>();
    for (int l = 0; l < 2; l++) {
      float[] k = new float[d.keys()[l].length];
      float[] v = new float[k.length];
      for (int t = 0; t < n; t++) {
        for (int h = 0; h < heads; h++) {
          System.arraycopy(d.keys()[l], (t * heads + h) * dim, k, (h * n + t) * dim, dim);
          System.arraycopy(d.values()[l], (t * heads + h) * dim, v, (h * n + t) * dim, dim);
        }
      }
      blocks.add(new MemoryBlock(LAYOUT.layers().get(l), d.id(), d.positions(), heads, dim, k, v, LAYOUT.storage()));
    }
    return blocks;
  }

  /**
   * Head-major blocks (the model's layout) of a whole document store what the same memory stores
   * when it comes window by window (converted from token-major rows), trained index included, and
   * both are the token-major rows.
   */
  @Test
  void memoryBlocksStoreWhatTokenMajorAppendsStore(@TempDir Path tmp) throws IOException {
    Doc a = doc("a", 200, 11);
    Doc b = doc("b", 250, 12);
    Path tokenMajor = tmp.resolve("tokens");
    Path headMajor = tmp.resolve("heads");
    int window = 37;
    for (Path dir : List.of(tokenMajor, headMajor)) {
      try (CollectionWriter w = CollectionWriter.create(dir, MODEL, LAYOUT, "bfloat16", "IVF4,Flat").trainingRows(450)) {
        try (ShardWriter sw = w.newShard("shard-0")) {
          // every row buffered until the 450th arrives: training sees both documents, whether they
          // came as one block each or as many windows
          for (Doc d : List.of(a, b)) {
            if (dir == headMajor) {
              sw.append(d.id(), blocks(d));
            } else {
              for (int from = 0; from < d.positions().length; from += window) {
                int to = Math.min(d.positions().length, from + window);
                TokenMajor.append(sw, d.id(), java.util.Arrays.copyOfRange(d.positions(), from, to),
                    slice(d.keys(), from, to), slice(d.values(), from, to));
              }
            }
          }
          w.commit(List.of(sw.finish()));
        }
      }
    }
    try (MemoryCollection x = MemoryCollection.open(tokenMajor, MODEL, true, false);
         MemoryCollection y = MemoryCollection.open(headMajor, MODEL, true, false)) {
      MemoryCollection.Shard sx = x.shards().get(0);
      MemoryCollection.Shard sy = y.shards().get(0);
      assertEquals(sx.documents(), sy.documents());
      float[] q = new float[16];
      java.util.Arrays.fill(q, 0.25f);
      for (int layer : LAYOUT.layers()) {
        int l = LAYOUT.layers().indexOf(layer);
        float[] rows = java.util.Arrays.copyOf(a.keys()[l], a.keys()[l].length + b.keys()[l].length);
        System.arraycopy(b.keys()[l], 0, rows, a.keys()[l].length, b.keys()[l].length);
        assertArrayEquals(rows, all(sy, layer, true));
        assertArrayEquals(all(sx, layer, true), all(sy, layer, true));
        assertArrayEquals(all(sx, layer, false), all(sy, layer, false));
        for (int h = 0; h < LAYOUT.heads(); h++) {
          FaissIndex.Result rx = sx.index(layer, h).search(q, 10);
          FaissIndex.Result ry = sy.index(layer, h).search(q, 10);
          assertArrayEquals(rx.ids(), ry.ids(), "layer " + layer + " head " + h);
        }
      }
      assertEquals(249, sy.position(449));
    }
  }

  @Test
  void roundTripsKeysValuesAndDocuments(@TempDir Path tmp) throws IOException {
    Doc a = doc("a", 700, 1);
    Doc b = doc("b", 5000, 2);
    Doc c = doc("c", 123, 3);
    Path dir = write(tmp.resolve("col"), "Flat", List.of(List.of(a, b), List.of(c)));
    assertFalse(Files.exists(dir.resolve(".staging")));
    try (MemoryCollection col = MemoryCollection.open(dir, MODEL, true, false)) {
      assertEquals(2, col.shards().size());
      assertEquals(5823, col.manifest().rows());
      MemoryCollection.Shard s0 = col.shards().get(0);
      assertEquals(List.of(new Manifest.DocumentEntry("a", 0, 700), new Manifest.DocumentEntry("b", 700, 5700)),
          s0.documents());
      assertEquals("b", s0.documentOf(701));
      for (int l = 0; l < 2; l++) {
        int layer = LAYOUT.layers().get(l);
        float[] keys = all(s0, layer, true);
        assertArrayEquals(a.keys()[l], java.util.Arrays.copyOf(keys, a.keys()[l].length));
        assertArrayEquals(b.values()[l], java.util.Arrays.copyOfRange(all(s0, layer, false), a.keys()[l].length, keys.length));
        assertArrayEquals(c.keys()[l], all(col.shards().get(1), layer, true));
      }
      assertEquals(4999, s0.position(5699));
      // the index of (layer 2, head 3) finds exactly what brute force over that head finds
      float[] q = new float[16];
      Random r = new Random(9);
      for (int i = 0; i < 16; i++) {
        q[i] = (float) r.nextGaussian();
      }
      FaissIndex.Result res = s0.index(2, 3).search(q, 5);
      float[] keys = all(s0, 2, true);
      Integer[] order = new Integer[5700];
      double[] score = new double[5700];
      for (int row = 0; row < 5700; row++) {
        order[row] = row;
        for (int d = 0; d < 16; d++) {
          score[row] += q[d] * keys[(row * 4 + 3) * 16 + d];
        }
      }
      java.util.Arrays.sort(order, (x, y) -> Double.compare(score[y], score[x]));
      for (int i = 0; i < 5; i++) {
        assertEquals((long) order[i], res.id(0, i));
      }
    }
  }

  @Test
  void trainedIndexesAndHalfPrecision(@TempDir Path tmp) throws IOException {
    ShardLayout half = new ShardLayout(List.of(1, 2), 4, 16, MemoryBlock.Storage.FLOAT16);
    Path dir = tmp.resolve("h");
    Doc d = doc("d", 2000, 4);
    try (CollectionWriter w = CollectionWriter.create(dir, MODEL, half, "float16", "IVF16,Flat").trainingRows(500)) {
      Manifest.ShardEntry e;
      try (ShardWriter sw = w.newShard("s")) {
        TokenMajor.append(sw, d.id(), d.positions(), d.keys(), d.values());
        e = sw.finish();
      }
      w.commit(List.of(e));
    }
    try (MemoryCollection col = MemoryCollection.open(dir, MODEL, true, true)) {
      MemoryCollection.Shard s = col.shards().get(0);
      assertEquals(2000, s.index(1, 0).size());
      float[] k = all(s, 1, true);
      for (int i = 0; i < k.length; i++) {
        assertEquals(d.keys()[0][i], k[i], Math.abs(d.keys()[0][i]) * 1e-3 + 1e-4, "float16 storage");
      }
    }
  }

  @Test
  void laterShardsReuseTheFirstShardsTraining(@TempDir Path tmp) throws IOException {
    // the second shard has 5 keys, too few to train 16 centroids: it starts from the trained template
    Path dir = write(tmp.resolve("ivf"), "IVF16,Flat", List.of(List.of(doc("a", 800, 8)), List.of(doc("b", 5, 9))));
    try (MemoryCollection col = MemoryCollection.open(dir, MODEL, true, false)) {
      MemoryCollection.Shard small = col.shards().get(1);
      assertEquals(5, small.index(1, 0).size());
      float[] q = new float[16];
      small.readKey(1, 3, 0, q, 0);
      FaissIndex.Result r = small.index(1, 0).search(q, 1, new FaissIndex.SearchParams(16, 0));
      assertEquals(3, r.id(0, 0), "a key finds itself");
    }
  }

  @Test
  void damagedCollectionsAreRefusedWithTheirPath(@TempDir Path tmp) throws IOException {
    Path dir = write(tmp.resolve("col"), "Flat", List.of(List.of(doc("a", 300, 5))));
    String msg = assertThrows(CollectionException.class, () -> MemoryCollection.open(dir, "sha256:model-b", true, false))
        .getMessage();
    assertTrue(msg.contains("written by model sha256:model-a"), msg);

    Path arrow = dir.resolve("shards/shard-0/layer-02.arrow");
    byte[] bytes = Files.readAllBytes(arrow);
    bytes[bytes.length / 2] ^= 0x5a;
    Files.write(arrow, bytes);
    msg = assertThrows(CollectionException.class, () -> MemoryCollection.open(dir, MODEL, true, false)).getMessage();
    assertTrue(msg.contains(arrow.toString()) && msg.contains("SHA-256"), msg);

    Path index = dir.resolve("shards/shard-0/layer-01.head-02.faiss");
    byte[] ib = Files.readAllBytes(index);
    Files.write(index, java.util.Arrays.copyOf(ib, ib.length - 10));
    msg = assertThrows(CollectionException.class, () -> MemoryCollection.open(dir, MODEL, false, false)).getMessage();
    assertTrue(msg.contains(index.toString()) && msg.contains("truncated"), msg);

    Files.delete(dir.resolve("manifest.json"));
    msg = assertThrows(CollectionException.class, () -> MemoryCollection.open(dir, MODEL, true, false)).getMessage();
    assertTrue(msg.contains("no manifest.json"), msg);
  }

  @Test
  void abandonedShardsLeaveNothingAndRulesHold(@TempDir Path tmp) throws IOException {
    Path dir = tmp.resolve("col");
    Doc a = doc("a", 50, 6);
    try (CollectionWriter w = CollectionWriter.create(dir, MODEL, LAYOUT, "bfloat16", "Flat")) {
      try (ShardWriter sw = w.newShard("broken")) {
        TokenMajor.append(sw, a.id(), a.positions(), a.keys(), a.values());
        // closed without finish(): a task that died
      }
      assertFalse(Files.exists(dir.resolve(".staging/broken")));
      assertFalse(Files.exists(dir.resolve("shards/broken")));
      try (ShardWriter sw = w.newShard("s1")) {
        TokenMajor.append(sw, a.id(), a.positions(), a.keys(), a.values());
        Doc other = doc("b", 10, 7);
        TokenMajor.append(sw, other.id(), other.positions(), other.keys(), other.values());
        var e = assertThrows(IllegalArgumentException.class,
            () -> TokenMajor.append(sw, a.id(), a.positions(), a.keys(), a.values()));
        assertTrue(e.getMessage().contains("already written"), e.getMessage());
        float[][] nan = {a.keys()[0].clone(), a.keys()[1]};
        nan[0][17] = Float.NaN;
        e = assertThrows(IllegalArgumentException.class, () -> TokenMajor.append(sw, "c", a.positions(), nan, a.values()));
        // token-major element 17 is token 0, head 1, component 1: in the head-major block, head 1's run of 50 tokens
        int headMajor = 1 * a.positions().length * LAYOUT.headDim() + 1;
        assertTrue(e.getMessage().contains("keys of layer 1: element " + headMajor + " is NaN"), e.getMessage());
        var first = sw.finish();
        try (ShardWriter sw2 = w.newShard("s2")) {
          TokenMajor.append(sw2, a.id(), a.positions(), a.keys(), a.values());
          var second = sw2.finish();
          assertThrows(CollectionException.class, () -> w.commit(List.of(first, second)));
        }
        assertFalse(Files.exists(dir.resolve("manifest.json")), "nothing committed");
        w.commit(List.of(first));
      }
    }
    assertThrows(CollectionException.class, () -> CollectionWriter.create(dir, MODEL, LAYOUT, "bfloat16", "Flat"));
  }
}
