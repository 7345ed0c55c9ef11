package io.longmem.memory.shard;

import io.longmem.memory.faiss.MappedReadException;
import io.longmem.memory.faiss.MappedReads;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Run in a child JVM by {@link TruncatedFilesTest} (a fault it fails to catch kills only the
 * child): opens a collection, truncates one of its Arrow files under the open mappings, and reads
 * the lost pages natively, from Java, and through a pin. Prints one line per check; exit 0 when
 * every read failed cleanly and the process lives.
 */
public final class TruncationProbe {
  private TruncationProbe() {}

  public static void main(String[] args) throws Exception {
    Path dir = SmallCollections.write(Path.of(args[0]), "Flat", 2000);
    try (MemoryCollection c = MemoryCollection.open(dir, SmallCollections.MODEL, false, false)) {
      MemoryCollection.Shard shard = c.shard("shard-0");
      long last = shard.rows() - 1;
      long address;
      try (MappedFile.Pin pin = shard.pin()) {
        address = shard.address(1, last, 0, true);
      }
      Path arrow = dir.resolve("shards/shard-0/layer-01.arrow");
      try (FileChannel ch = FileChannel.open(arrow, StandardOpenOption.WRITE)) {
        ch.truncate(0);
      }
      byte[] out = new byte[64];
      try {
        MappedReads.gather(new long[] {address}, 1, 32, out, 0);
        System.out.println("FAIL native: a read of a lost page returned");
      } catch (MappedReadException e) {
        System.out.println("native: " + e.getMessage());
      }
      try {
        MappedReads.innerProducts(new float[8], 0, 8, new long[] {address}, 1, false, new float[1]);
        System.out.println("FAIL native: an inner product over a lost page returned");
      } catch (MappedReadException e) {
        System.out.println("native again: " + e.getMessage());
      }
      // the guard is off again outside its reads: a good read works
      ByteBuffer good = ByteBuffer.allocateDirect(64);
      good.put(0, (byte) 42);
      MappedReads.gather(new long[] {MappedReads.address(good)}, 1, 1, out, 0);
      System.out.println(out[0] == 42 ? "good read: ok" : "FAIL good read: " + out[0]);
      // the JVM's own handling of Java's mapped reads still works (our handler chains to it)
      try {
        shard.readKey(1, last, 0, new float[8], 0);
        System.out.println("FAIL java: a read of a lost page returned");
      } catch (MappedFile.FileChangedException e) {
        System.out.println("java: " + e.getMessage());
      }
      try {
        shard.pin().close();
        System.out.println("FAIL pin: a damaged file was pinned");
      } catch (MappedFile.FileChangedException e) {
        System.out.println("pin: " + e.getMessage());
      }
    }
    System.out.println("alive");
  }
}
