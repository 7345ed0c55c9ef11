package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.io.Npy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Shards are readable without longmem: the FAISS files by Python faiss (Debian's python3-faiss)
 * and the Arrow files by another Arrow implementation (apache-arrow for Node.js). Skipped where
 * those readers are not installed (bin/install-build-deps installs them; CI runs this).
 */
class InteropTest {
  private static final Path SCRIPTS = Path.of("src/test/interop").toAbsolutePath();

  private static String run(Path dir, String... cmd) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assumeTrue(p.waitFor(120, TimeUnit.SECONDS), "timed out: " + String.join(" ", cmd));
    if (p.exitValue() != 0) {
      throw new AssertionError(String.join(" ", cmd) + " failed:\n" + out);
    }
    return out;
  }

  private static boolean works(String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      p.getInputStream().readAllBytes();
      return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
    } catch (IOException | InterruptedException e) {
      return false;
    }
  }

  private static Path collection(Path tmp) throws IOException {
    ShardLayout layout = new ShardLayout(List.of(3), 2, 8, MemoryBlock.Storage.FLOAT32);
    Random r = new Random(3);
    int n = 500;
    float[] k = new float[n * 16];
    float[] v = new float[n * 16];
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) r.nextGaussian();
      v[i] = (float) r.nextGaussian();
    }
    int[] pos = new int[n];
    for (int i = 0; i < n; i++) {
      pos[i] = i;
    }
    Path dir = tmp.resolve("c");
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:x", layout, "float32", "Flat")) {
      Manifest.ShardEntry e;
      try (ShardWriter s = w.newShard("s0")) {
        TokenMajor.append(s, "book", pos, new float[][] {k}, new float[][] {v});
        e = s.finish();
      }
      w.commit(List.of(e));
    }
    return dir;
  }

  @Test
  void pythonFaissReadsTheIndexes(@TempDir Path tmp) throws Exception {
    assumeTrue(works("/usr/bin/python3", "-c", "import faiss, numpy"), "python3-faiss is not installed");
    Path dir = collection(tmp);
    Path index = dir.resolve("shards/s0/layer-03.head-01.faiss");
    float[] q = new float[3 * 8];
    Random r = new Random(4);
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    Path queries = tmp.resolve("q.npy");
    Npy.write(queries, new long[] {3, 8}, q);
    String[] lines = run(tmp, "/usr/bin/python3", SCRIPTS.resolve("read_faiss.py").toString(), index.toString(),
        queries.toString(), "3").trim().split("\n");
    assertEquals("500", lines[0].trim());
    try (FaissIndex java = FaissIndex.read(index, false)) {
      FaissIndex.Result res = java.search(q, 3);
      for (int i = 0; i < 3; i++) {
        assertEquals(res.id(i, 0) + " " + res.id(i, 1) + " " + res.id(i, 2), lines[1 + i].trim());
      }
    }
  }

  @Test
  void anotherArrowImplementationReadsTheLayerFiles(@TempDir Path tmp) throws Exception {
    assumeTrue(works("node", "--version") && works("npm", "--version"), "node/npm are not installed");
    Path modules = Path.of("target/interop-node").toAbsolutePath();
    if (!Files.isDirectory(modules.resolve("node_modules/apache-arrow"))) {
      Files.createDirectories(modules);
      assumeTrue(works("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", modules.toString(),
          "apache-arrow@21.2.0"), "npm could not install apache-arrow");
    }
    Path script = modules.resolve("read_arrow.mjs");
    Files.copy(SCRIPTS.resolve("read_arrow.mjs"), script, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    Path dir = collection(tmp);
    String[] lines = run(modules, "node", script.toString(), dir.resolve("shards/s0/layer-03.arrow").toString(), "3")
        .trim().split("\n");
    assertEquals("500", lines[0].trim());
    try (MemoryCollection c = MemoryCollection.open(dir, null, true, false)) {
      MemoryCollection.Shard s = c.shards().get(0);
      List<String> expected = new ArrayList<>();
      float[] key = new float[8];
      for (int row = 0; row < 3; row++) {
        s.readKey(3, row, 0, key, 0);
        expected.add("book " + row + " " + key[0] + " " + key[1]);
      }
      for (int row = 0; row < 3; row++) {
        String[] got = lines[1 + row].trim().split(" ");
        String[] want = expected.get(row).split(" ");
        assertEquals(want[0], got[0]);
        assertEquals(want[1], got[1]);
        assertEquals(Float.parseFloat(want[2]), Float.parseFloat(got[2]), 0f);
        assertEquals(Float.parseFloat(want[3]), Float.parseFloat(got[3]), 0f);
      }
    }
  }
}
