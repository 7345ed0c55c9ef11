package io.longmem.memory.shard;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A shard entry's {@code dir} (a collection committed by manifest names the attempt whose files
 * are the shard): the shard is read from there; a dir that is not the shard's own is refused.
 */
class ShardDirTest {

  /** Moves shard-0's files to shards/shard-0.{attempt} and records that in the manifest. */
  private static void moveShard0(Path dir, String attempt) throws IOException {
    String to = "shards/shard-0." + attempt;
    Files.move(dir.resolve("shards/shard-0"), dir.resolve(to));
    SmallCollections.editManifest(dir, m -> {
      JsonObject s = SmallCollections.shard(m, 0);
      s.addProperty("dir", to);
      s.getAsJsonArray("files").forEach(f -> f.getAsJsonObject().addProperty("path",
          f.getAsJsonObject().get("path").getAsString().replace("shards/shard-0/", to + "/")));
    });
  }

  private static float[] key(Path dir, int shard, long row) throws IOException {
    try (MemoryCollection c = MemoryCollection.open(dir, SmallCollections.MODEL, true, false)) {
      float[] k = new float[SmallCollections.LAYOUT.headDim()];
      c.shards().get(shard).readKey(1, row, 1, k, 0);
      return k;
    }
  }

  @Test
  void aShardIsReadFromTheAttemptItsEntryNames(@TempDir Path tmp) throws IOException {
    Path plain = SmallCollections.write(tmp.resolve("plain"), "Flat", 30);
    Path moved = SmallCollections.write(tmp.resolve("moved"), "Flat", 30);
    moveShard0(moved, "attempt-7");
    assertArrayEquals(key(plain, 0, 41), key(moved, 0, 41));
  }

  @Test
  void aDirThatIsNotTheShardsOwnIsRefused(@TempDir Path tmp) throws IOException {
    for (String bad : new String[] {"shards/shard-1", "shards/shard-0.a.b", "shards/shard-0/..", "elsewhere/shard-0"}) {
      Path dir = SmallCollections.write(tmp.resolve("c" + bad.hashCode()), "Flat", 30);
      SmallCollections.editManifest(dir, m -> SmallCollections.shard(m, 0).addProperty("dir", bad));
      String msg = assertThrows(CollectionException.class,
          () -> MemoryCollection.open(dir, SmallCollections.MODEL, true, false)).getMessage();
      assertTrue(msg.contains("shard shard-0 has dir") || msg.contains("share the directory"), bad + ": " + msg);
    }
  }
}
