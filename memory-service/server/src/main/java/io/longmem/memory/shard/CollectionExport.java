package io.longmem.memory.shard;

import io.longmem.io.InputException;
import com.google.gson.GsonBuilder;
import io.longmem.io.Npy;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes one layer of a collection as plain NumPy files, for inspection: {@code keys.npy} and
 * {@code values.npy} float32 [heads, tokens, head_dim], {@code positions.npy} int32 [tokens], and
 * {@code documents.json} (each document's token range in that order). Arrays are streamed, so
 * they may be larger than any Java array.
 */
public final class CollectionExport {
  private CollectionExport() {}

  /** @return the number of tokens written */
  public static long export(MemoryCollection collection, int layer, Path out) throws IOException {
    ShardLayout layout = collection.layout();
    if (!layout.layers().contains(layer)) {
      throw new InputException("layer " + layer + " is not in " + collection.dir() + " (layers "
          + layout.layers() + ")");
    }
    long tokens = collection.manifest().rows();
    long[] shape = {layout.heads(), tokens, layout.headDim()};
    Files.createDirectories(out);
    Npy.write(out.resolve("keys.npy"), shape, "<f4", o -> byHead(collection, layer, true, o));
    Npy.write(out.resolve("values.npy"), shape, "<f4", o -> byHead(collection, layer, false, o));
    Npy.write(out.resolve("positions.npy"), new long[] {tokens}, "<i4", o -> {
      ByteBuffer b = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
      for (MemoryCollection.Shard s : collection.shards()) {
        for (long row = 0; row < s.rows(); row++) {
          o.write(b.putInt(0, s.position(row)).array());
        }
      }
    });
    List<Map<String, Object>> docs = new ArrayList<>();
    long offset = 0;
    for (MemoryCollection.Shard s : collection.shards()) {
      for (Manifest.DocumentEntry d : s.documents()) {
        docs.add(Map.of("id", d.id(), "shard", s.id(), "begin", offset + d.begin(), "end", offset + d.end()));
      }
      offset += s.rows();
    }
    Files.writeString(out.resolve("documents.json"), new GsonBuilder().setPrettyPrinting().create().toJson(docs));
    return tokens;
  }

  private static void byHead(MemoryCollection c, int layer, boolean keys, OutputStream o) throws IOException {
    ShardLayout layout = c.layout();
    int dim = layout.headDim();
    ByteBuffer b = ByteBuffer.allocate(dim * 4).order(ByteOrder.LITTLE_ENDIAN);
    float[] row = new float[dim];
    for (int h = 0; h < layout.heads(); h++) {
      for (MemoryCollection.Shard s : c.shards()) {
        for (long r = 0; r < s.rows(); r++) {
          if (keys) {
            s.readKey(layer, r, h, row, 0);
          } else {
            s.readValue(layer, r, h, row, 0);
          }
          b.clear();
          b.asFloatBuffer().put(row);
          o.write(b.array());
        }
      }
    }
  }
}
