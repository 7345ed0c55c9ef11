package io.longmem.model.checkpoint;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.longmem.io.AtomicFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;

/**
 * Writes arrays as a safetensors file (little-endian, header padded to 8 bytes), F32 or BF16
 * (rounded to nearest even), atomically: what training saves and {@link SafetensorsFile} reads.
 */
public final class SafetensorsWriter {
  private SafetensorsWriter() {}

  /** Writes {@code tensors} in map order, each stored as {@code type} (F32 or BF16). */
  public static void write(Path file, Map<String, NDArray> tensors, StorageType type) throws IOException {
    if (type != StorageType.F32 && type != StorageType.BF16) {
      throw new IllegalArgumentException("safetensors output as F32 or BF16, not " + type);
    }
    JsonObject header = new JsonObject();
    long offset = 0;
    for (Map.Entry<String, NDArray> e : tensors.entrySet()) {
      long n = e.getValue().size();
      JsonObject t = new JsonObject();
      t.addProperty("dtype", type.name());
      JsonArray shape = new JsonArray();
      for (long d : e.getValue().getShape().getShape()) {
        shape.add(d);
      }
      t.add("shape", shape);
      JsonArray offs = new JsonArray();
      offs.add(offset);
      offs.add(offset + type.bytes() * n);
      t.add("data_offsets", offs);
      header.add(e.getKey(), t);
      offset += type.bytes() * n;
    }
    byte[] head = header.toString().getBytes(StandardCharsets.UTF_8);
    int pad = (8 - head.length % 8) % 8;
    AtomicFiles.write(file, tmp -> {
      try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(head.length + pad);
        ch.write(len.flip());
        ch.write(ByteBuffer.wrap(head));
        ch.write(ByteBuffer.wrap(" ".repeat(pad).getBytes(StandardCharsets.US_ASCII)));
        for (NDArray a : tensors.values()) {
          // toType gives the array itself when it is float32 already: close only a converted copy
          NDArray f = a.getDataType() == DataType.FLOAT32 ? a : a.toType(DataType.FLOAT32, false);
          float[] values = f.toFloatArray();
          if (f != a) {
            f.close();
          }
          ByteBuffer buf = ByteBuffer.allocate(values.length * type.bytes()).order(ByteOrder.LITTLE_ENDIAN);
          for (float v : values) {
            if (type == StorageType.F32) {
              buf.putFloat(v);
            } else {
              buf.putShort(bfloat16(v));
            }
          }
          ch.write(buf.flip());
        }
      }
    });
  }

  /** float32 to bfloat16, rounding to nearest even (NaN stays NaN). */
  static short bfloat16(float v) {
    int bits = Float.floatToRawIntBits(v);
    if (Float.isNaN(v)) {
      return (short) ((bits >>> 16) | 0x40);
    }
    int rounded = bits + 0x7fff + ((bits >>> 16) & 1);
    return (short) (rounded >>> 16);
  }
}
