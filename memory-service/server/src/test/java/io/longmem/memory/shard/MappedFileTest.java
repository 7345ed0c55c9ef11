package io.longmem.memory.shard;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.MappedReads;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Pins keep a closed shard's files mapped until the last is released; after that reads fail cleanly. */
class MappedFileTest {
  private static final ShardLayout LAYOUT = new ShardLayout(List.of(1, 2), 2, 4, MemoryBlock.Storage.FLOAT32);

  @TempDir
  Path tmp;

  private float[][] write(Path dir) throws IOException {
    Random r = new Random(3);
    float[][] keys = new float[2][10 * 2 * 4];
    float[][] values = new float[2][keys[0].length];
    for (int l = 0; l < 2; l++) {
      for (int i = 0; i < keys[l].length; i++) {
        keys[l][i] = (float) r.nextGaussian();
        values[l][i] = (float) r.nextGaussian();
      }
    }
    try (CollectionWriter w = CollectionWriter.create(dir, "sha256:m", LAYOUT, "float32", "Flat")) {
      Manifest.ShardEntry e;
      try (ShardWriter sw = w.newShard("s0")) {
        TokenMajor.append(sw, "doc", new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, keys, values);
        e = sw.finish();
      }
      w.commit(List.of(e));
    }
    return keys;
  }

  @Test
  void aPinnedShardStaysReadableAfterCloseAndFailsCleanlyOnceReleased() throws IOException {
    float[][] keys = write(tmp.resolve("c"));
    MemoryCollection c = MemoryCollection.open(tmp.resolve("c"), null, true, false);
    MemoryCollection.Shard shard = c.shard("s0");
    MappedFile.Pin pin = shard.pin();
    MappedFile.Pin second = shard.pin();
    c.close();
    // still pinned: reads by address and from Java see the stored key
    float[] key = new float[4];
    shard.readKey(2, 3, 1, key, 0);
    assertArrayEquals(java.util.Arrays.copyOfRange(keys[1], (3 * 2 + 1) * 4, (3 * 2 + 2) * 4), key);
    byte[] raw = new byte[16];
    MappedReads.gather(new long[] {shard.address(2, 3, 1, true)}, 1, 16, raw, 0);
    float[] gathered = new float[4];
    ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(gathered);
    assertArrayEquals(key, gathered);
    // no new pins once closed
    assertThrows(MappedFile.MappingClosedException.class, shard::pin);
    pin.close();
    pin.close(); // twice is harmless
    assertDoesNotThrow(() -> shard.position(3));
    second.close();
    // unmapped: every read refuses, none touches the memory
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.readKey(2, 3, 1, key, 0));
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.readValue(1, 3, 1, key, 0));
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.address(2, 3, 1, true));
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.positionAddress(3));
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.position(3));
    String msg = assertThrows(MappedFile.MappingClosedException.class, shard::pin).getMessage();
    assertTrue(msg.contains("closed"), msg);
  }

  @Test
  void closingWithoutPinsUnmapsAtOnce() throws IOException {
    write(tmp.resolve("d"));
    MemoryCollection c = MemoryCollection.open(tmp.resolve("d"), null, false, false);
    MemoryCollection.Shard shard = c.shard("s0");
    try (MappedFile.Pin p = shard.pin()) {
      assertFalse(shard.position(2) < 0);
    }
    c.close();
    c.close(); // twice is harmless
    assertThrows(MappedFile.MappingClosedException.class, () -> shard.position(2));
  }
}
