package io.longmem.memory.shard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Damaged copies of a real collection, each refused at load with a message naming the problem:
 * a manifest that lists none of a shard's files, indexes whose ids or graph do not fit the shard,
 * shard ids and links that lead out of the collection, document ranges that do not tile the rows.
 */
class DamagedCollectionTest {
  private static final String INDEX = "shards/shard-0/layer-01.head-01.faiss";

  private static String refused(Path dir, boolean verify) {
    return assertThrows(CollectionException.class, () -> MemoryCollection.open(dir, SmallCollections.MODEL, verify, false))
        .getMessage();
  }

  @Test
  void aShardWhoseFilesAreNotListedIsRefused(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    MemoryCollection.open(dir, SmallCollections.MODEL, true, false).close();
    // garbage where an index was, and a manifest that lists nothing for the shard: nothing verified
    Files.write(dir.resolve(INDEX), new byte[] {1, 2, 3});
    SmallCollections.editManifest(dir, m -> SmallCollections.shard(m, 0).add("files", new JsonArray()));
    String msg = refused(dir, true);
    assertTrue(msg.contains("shard shard-0 uses shards/shard-0/layer-01.arrow") && msg.contains("does not list"), msg);
  }

  @Test
  void aSwappedIndexIsRefusedByItsChecksum(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40); // same size: only the checksum tells
    Files.copy(dir.resolve("shards/shard-0/layer-01.head-00.faiss"), dir.resolve(INDEX),
        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    String msg = refused(dir, true);
    assertTrue(msg.contains(INDEX) && msg.contains("SHA-256"), msg);
  }

  @Test
  void garbageThatIsRecordedAsTheIndexIsRefused(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    byte[] junk = new byte[4096];
    new java.util.Random(1).nextBytes(junk);
    Files.write(dir.resolve(INDEX), junk);
    SmallCollections.rerecord(dir, INDEX);
    String msg = refused(dir, true);
    assertTrue(msg.contains(INDEX) && msg.contains("not a readable FAISS index"), msg);
  }

  @Test
  void anIndexWithIdsOutsideItsShardIsRefused(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    Path index = dir.resolve(INDEX);
    byte[] b = Files.readAllBytes(index);
    // an IDMap ends with its id map: the last id points far past the shard's 80 rows
    ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(b.length - 8, 1_000_000L);
    Files.write(index, b);
    SmallCollections.rerecord(dir, INDEX);
    String msg = refused(dir, true);
    assertTrue(msg.contains(INDEX) && msg.contains("id 1000000 is outside the shard's rows [0, 80)"), msg);
  }

  @Test
  void anHnswGraphWithBadNeighborsIsRefused(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "HNSW16", 40);
    Path index = dir.resolve(INDEX);
    byte[] b = Files.readAllBytes(index);
    ByteBuffer buf = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    buf.putInt(firstNeighbor(buf), 1_000_000);
    Files.write(index, b);
    SmallCollections.rerecord(dir, INDEX);
    String msg = refused(dir, true);
    assertTrue(msg.contains(INDEX) && msg.contains("neighbor 1000000 is outside [0, 80)"), msg);
  }

  /** Where the first neighbor id of an IDMap(HNSW(Flat)) file lies (FAISS 1.7.3's layout). */
  private static int firstNeighbor(ByteBuffer b) {
    int p = header(b, 0, "IxMp");
    p = header(b, p, "IHNf");
    p = skipVector(b, p, 8); // assign_probas
    p = skipVector(b, p, 4); // cum_nneighbor_per_level
    p = skipVector(b, p, 4); // levels
    p = skipVector(b, p, 8); // offsets
    assertTrue(b.getLong(p) > 0, "a neighbor table");
    return p + 8;
  }

  private static int header(ByteBuffer b, int p, String fourcc) {
    byte[] tag = new byte[4];
    b.get(p, tag);
    assertEquals(fourcc, new String(tag, java.nio.charset.StandardCharsets.US_ASCII), "FAISS file layout");
    int metric = b.getInt(p + 4 + 4 + 8 + 8 + 8 + 1);
    return p + 4 + 4 + 8 + 8 + 8 + 1 + 4 + (metric > 1 ? 4 : 0);
  }

  private static int skipVector(ByteBuffer b, int p, int elem) {
    return (int) (p + 8 + b.getLong(p) * elem);
  }

  @Test
  void shardIdsAndLinksMayNotLeaveTheCollection(@TempDir Path tmp) throws IOException {
    Path other = SmallCollections.write(tmp.resolve("other"), "Flat", 40);
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    SmallCollections.editManifest(dir, m -> SmallCollections.shard(m, 1).addProperty("id", "../../other/shards/shard-1"));
    String msg = refused(dir, false);
    assertTrue(msg.contains("shard id \"../../other/shards/shard-1\" is not a plain name"), msg);

    // a listed file that is a link to another collection's file
    Path dir2 = SmallCollections.write(tmp.resolve("col2"), "Flat", 40);
    Path arrow = dir2.resolve("shards/shard-1/layer-01.arrow");
    Files.delete(arrow);
    Files.createSymbolicLink(arrow, other.resolve("shards/shard-1/layer-01.arrow"));
    msg = refused(dir2, false);
    assertTrue(msg.contains(arrow.toString()) && msg.contains("links to a file outside the collection"), msg);

    for (String id : new String[] {"..", ".", "a/b", "", "shard-0\u0000"}) {
      Path d = SmallCollections.write(tmp.resolve("id" + Math.abs(id.hashCode())), "Flat", 40);
      SmallCollections.editManifest(d, m -> SmallCollections.shard(m, 0).addProperty("id", id));
      msg = refused(d, false);
      assertTrue(msg.contains("is not a plain name"), id + ": " + msg);
    }
  }

  @Test
  void documentRangesMustTileTheShardsRows(@TempDir Path tmp) throws IOException {
    long[][][] bad = {
      {{0, 40}, {40, 81}}, // past the rows
      {{0, 41}, {40, 80}}, // overlapping
      {{40, 80}, {0, 40}}, // unordered
      {{-1, 40}, {40, 80}}, // negative
      {{0, 40}, {40, 40}}, // empty
      {{0, 30}, {40, 80}}, // a gap
      {{0, 40}}, // rows left over
    };
    int i = 0;
    for (long[][] ranges : bad) {
      Path dir = SmallCollections.write(tmp.resolve("col" + i++), "Flat", 40);
      SmallCollections.editManifest(dir, m -> {
        JsonArray docs = SmallCollections.shard(m, 0).getAsJsonArray("documents");
        while (docs.size() > ranges.length) {
          docs.remove(docs.size() - 1);
        }
        for (int d = 0; d < ranges.length; d++) {
          JsonObject o = docs.get(d).getAsJsonObject();
          o.addProperty("begin", ranges[d][0]);
          o.addProperty("end", ranges[d][1]);
        }
      });
      String msg = refused(dir, false);
      assertTrue(msg.contains(dir.resolve("manifest.json").toString()) && msg.contains("shard shard-0")
          && (msg.contains("has rows") || msg.contains("cover rows")), java.util.Arrays.deepToString(ranges) + ": " + msg);
    }
  }

  @Test
  void layersAndShapesAreBounded(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    SmallCollections.editManifest(dir, m -> {
      JsonArray layers = new JsonArray();
      layers.add(Integer.MAX_VALUE);
      m.add("layers", layers);
    });
    assertTrue(refused(dir, false).contains("must be distinct numbers in [0, 4096)"));
    SmallCollections.editManifest(dir, m -> {
      JsonArray layers = new JsonArray();
      layers.add(1);
      m.add("layers", layers);
      m.addProperty("heads", 1 << 20);
    });
    assertTrue(refused(dir, false).contains("heads 1048576"));
  }

  @Test
  void aTruncatedArrowFileIsRefusedAtLoad(@TempDir Path tmp) throws IOException {
    Path dir = SmallCollections.write(tmp.resolve("col"), "Flat", 40);
    Path arrow = dir.resolve("shards/shard-1/layer-01.arrow");
    try (var ch = java.nio.channels.FileChannel.open(arrow, java.nio.file.StandardOpenOption.WRITE)) {
      ch.truncate(ch.size() / 2);
    }
    String msg = refused(dir, false);
    assertTrue(msg.contains(arrow.toString()) && msg.contains("truncated"), msg);
    // recorded as if written so: the Arrow reader refuses what is left
    SmallCollections.rerecord(dir, "shards/shard-1/layer-01.arrow");
    msg = refused(dir, true);
    assertTrue(msg.contains(arrow.toString()), msg);
  }
}
