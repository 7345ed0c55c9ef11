package io.longmem.memory.api;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The proto's arrays: little-endian float32, float16 and int32 bytes (see memory.proto), read
 * and written by client and server alike. A byte count that is not a whole number of elements is
 * a {@link WireFormatException} naming the field.
 */
public final class Wire {
  private Wire() {}

  public static ByteString bytes(float[] a, int n) {
    return bytes(a, 0, n);
  }

  /** n floats of a from off as little-endian bytes. */
  public static ByteString bytes(float[] a, int off, int n) {
    ByteBuffer b = ByteBuffer.allocate(n * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(a, off, n);
    return UnsafeByteOperations.unsafeWrap(b.array());
  }

  public static ByteString ints(int[] a) {
    ByteBuffer b = ByteBuffer.allocate(a.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asIntBuffer().put(a);
    return UnsafeByteOperations.unsafeWrap(b.array());
  }

  /** Little-endian float32 bytes; a length that is not a multiple of 4 is the field's fault. */
  public static float[] floats(ByteString s, String field) {
    if (s.size() % 4 != 0) {
      throw new WireFormatException(field + ": " + s.size() + " bytes is not a whole number of float32 values");
    }
    float[] out = new float[s.size() / 4];
    s.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
    return out;
  }

  /** Little-endian float16 bytes as floats. */
  public static float[] halfs(ByteString s, String field) {
    if (s.size() % 2 != 0) {
      throw new WireFormatException(field + ": " + s.size() + " bytes is not a whole number of float16 values");
    }
    java.nio.ShortBuffer b = s.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asShortBuffer();
    float[] out = new float[s.size() / 2];
    for (int i = 0; i < out.length; i++) {
      out[i] = Float16.toFloat(b.get(i));
    }
    return out;
  }

  public static int[] ints(ByteString s) {
    if (s.size() % 4 != 0) {
      throw new WireFormatException(s.size() + " bytes is not a whole number of int32 values");
    }
    int[] out = new int[s.size() / 4];
    s.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(out);
    return out;
  }
}
