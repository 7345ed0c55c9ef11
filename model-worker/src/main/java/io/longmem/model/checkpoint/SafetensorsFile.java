package io.longmem.model.checkpoint;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads a {@code .safetensors} file: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw bytes. Each tensor is memory-mapped on
 * its own, so files above 2 GiB work (DJL's reader stops there) as long as one tensor is below.
 */
final class SafetensorsFile {
  private static final long MAX_HEADER = 100L << 20;

  private SafetensorsFile() {}

  static Map<String, StoredTensor> open(Path file) throws IOException {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      long size = ch.size();
      if (size < 8) {
        throw new CheckpointException(file + ": truncated safetensors file (" + size + " bytes)");
      }
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, len, 0);
      long headerLen = len.flip().getLong();
      if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > size) {
        throw new CheckpointException(file + ": bad safetensors header length " + headerLen + " (file has " + size
            + " bytes): truncated or not a safetensors file");
      }
      ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
      readFully(ch, hb, 8);
      JsonObject header;
      try {
        header = JsonParser.parseString(new String(hb.array(), StandardCharsets.UTF_8)).getAsJsonObject();
      } catch (RuntimeException e) {
        throw new CheckpointException(file + ": safetensors header is not valid JSON: " + e.getMessage());
      }
      long dataStart = 8 + headerLen;
      long dataLen = size - dataStart;
      Map<String, StoredTensor> out = new LinkedHashMap<>();
      for (Map.Entry<String, JsonElement> e : header.entrySet()) {
        if (e.getKey().equals("__metadata__")) {
          continue;
        }
        String name = e.getKey();
        JsonObject t = e.getValue().getAsJsonObject();
        String dtype = t.get("dtype").getAsString();
        StorageType type = StorageType.fromSafetensors(dtype);
        if (type == null) {
          throw new CheckpointException(file + ": tensor " + name + " has unsupported dtype " + dtype);
        }
        var shapeJson = t.getAsJsonArray("shape");
        long[] shape = new long[shapeJson.size()];
        for (int i = 0; i < shape.length; i++) {
          shape[i] = shapeJson.get(i).getAsLong();
        }
        var offsets = t.getAsJsonArray("data_offsets");
        long begin = offsets.get(0).getAsLong();
        long end = offsets.get(1).getAsLong();
        if (begin < 0 || end < begin || end > dataLen) {
          throw new CheckpointException(file + ": tensor " + name + " spans bytes [" + begin + ", " + end
              + ") but the file holds " + dataLen + " data bytes: truncated file?");
        }
        if (end - begin > Integer.MAX_VALUE) {
          throw new CheckpointException(file + ": tensor " + name + " is larger than 2 GiB; split it into shards");
        }
        ByteBuffer mapped = ch.map(FileChannel.MapMode.READ_ONLY, dataStart + begin, end - begin);
        out.put(name, new StoredTensor(name, file.toString(), type, shape, mapped));
      }
      return out;
    }
  }

  private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
    while (b.hasRemaining()) {
      int n = ch.read(b, pos);
      if (n < 0) {
        throw new CheckpointException("unexpected end of file");
      }
      pos += n;
    }
  }
}
