package io.longmem.model.checkpoint;

import com.google.gson.JsonArray;
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
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a {@code .safetensors} file: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw bytes. Each tensor is memory-mapped on
 * its own, so files above 2 GiB work (DJL's reader stops there) as long as one tensor is below.
 */
public final class SafetensorsFile {
  private static final long MAX_HEADER = 100L << 20;

  private SafetensorsFile() {}

  public static Map<String, StoredTensor> open(Path file) throws IOException {
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
        // getAsJsonObject refuses a header that is an array or a string
      } catch (RuntimeException e) {
        throw new CheckpointException(file + ": safetensors header is not valid JSON: " + e.getMessage());
      }
      long dataStart = 8 + headerLen;
      long dataLen = size - dataStart;
      List<Entry> entries = new ArrayList<>();
      for (Map.Entry<String, JsonElement> e : header.entrySet()) {
        if (!e.getKey().equals("__metadata__")) {
          entries.add(Entry.parse(file, e.getKey(), e.getValue(), dataLen));
        }
      }
      checkCoverage(file, entries, dataLen);
      Map<String, StoredTensor> out = new LinkedHashMap<>();
      for (Entry t : entries) {
        ByteBuffer mapped = ch.map(FileChannel.MapMode.READ_ONLY, dataStart + t.begin(), t.end() - t.begin());
        out.put(t.name(), new StoredTensor(t.name(), file.toString(), t.type(), t.shape(), mapped));
      }
      return out;
    }
  }

  /**
   * The tensors' byte ranges must tile the data section as the safetensors format requires (and
   * its reference reader checks): in order, no overlap, no gap, nothing after the last one.
   * Overlapping ranges would let one tensor's bytes be read as another's.
   */
  private static void checkCoverage(Path file, List<Entry> entries, long dataLen) {
    List<Entry> sorted = new ArrayList<>(entries);
    sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
    long next = 0;
    String previous = null;
    for (Entry r : sorted) {
      long begin = r.begin();
      if (begin < next) {
        throw new CheckpointException(file + ": tensor " + r.name() + " starts at byte " + begin
            + ", inside tensor " + previous + " (which ends at " + next + "): overlapping data");
      }
      if (begin > next) {
        throw new CheckpointException(file + ": tensor " + r.name() + " starts at byte " + begin + ", but "
            + (previous == null ? "the data starts at 0" : "tensor " + previous + " ends at " + next)
            + ": the data has a gap (misaligned offsets?)");
      }
      next = r.end();
      previous = r.name();
    }
    if (next != dataLen) {
      throw new CheckpointException(file + ": the tensors end at data byte " + next + " but the file holds "
          + dataLen + " data bytes");
    }
  }

  /** One header entry, every field checked: dtype, an exact non-negative shape, two offsets that match it. */
  private record Entry(String name, StorageType type, long[] shape, long begin, long end) {
    static Entry parse(Path file, String name, JsonElement value, long dataLen) {
      String where = file + ": tensor " + name;
      if (!value.isJsonObject()) {
        throw new CheckpointException(where + " is not a JSON object in the safetensors header");
      }
      JsonObject t = value.getAsJsonObject();
      JsonElement d = t.get("dtype");
      if (d == null || !d.isJsonPrimitive() || !d.getAsJsonPrimitive().isString()) {
        throw new CheckpointException(where + " has no dtype string");
      }
      StorageType type = StorageType.fromSafetensors(d.getAsString());
      if (type == null) {
        throw new CheckpointException(where + " has unsupported dtype " + d.getAsString());
      }
      long[] shape = longs(where, "shape", t.get("shape"), -1);
      long[] offsets = longs(where, "data_offsets", t.get("data_offsets"), 2);
      long begin = offsets[0];
      long end = offsets[1];
      if (end < begin || end > dataLen) {
        throw new CheckpointException(where + " spans bytes [" + begin + ", " + end
            + ") but the file holds " + dataLen + " data bytes: truncated file?");
      }
      long bytes = type.bytes();
      try {
        for (long n : shape) {
          bytes = Math.multiplyExact(bytes, n);
        }
      } catch (ArithmeticException e) {
        bytes = -1;
      }
      if (bytes != end - begin) {
        throw new CheckpointException(where + " " + java.util.Arrays.toString(shape) + " " + type + " needs "
            + (bytes < 0 ? "more than 2^63" : Long.toString(bytes)) + " bytes, its data_offsets span " + (end - begin));
      }
      if (end - begin > Integer.MAX_VALUE) {
        throw new CheckpointException(where + " is larger than 2 GiB; split it into shards");
      }
      return new Entry(name, type, shape, begin, end);
    }

    /** A JSON array of non-negative integers read exactly (512.5 is refused, not read as 512). */
    private static long[] longs(String where, String field, JsonElement e, int length) {
      if (e == null || !e.isJsonArray()) {
        throw new CheckpointException(where + " has no " + field + " array");
      }
      JsonArray a = e.getAsJsonArray();
      if (length >= 0 && a.size() != length) {
        throw new CheckpointException(where + ": " + field + " must have " + length + " entries, has " + a.size());
      }
      long[] r = new long[a.size()];
      for (int i = 0; i < r.length; i++) {
        JsonElement x = a.get(i);
        try {
          if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isNumber()) {
            throw new NumberFormatException();
          }
          r[i] = x.getAsBigDecimal().longValueExact();
        } catch (ArithmeticException | NumberFormatException bad) {
          r[i] = -1;
        }
        if (r[i] < 0) {
          throw new CheckpointException(where + ": " + field + " entry " + x + " is not a non-negative integer");
        }
      }
      return r;
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
