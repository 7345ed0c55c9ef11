package io.longmem.model.checkpoint;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * One tensor as a checkpoint stores it: element type, shape, and a read-only little-endian view of
 * its bytes (memory-mapped: a multi-GiB shard never lands on the Java heap).
 */
public final class StoredTensor {
  private final String name;
  private final String file;
  private final StorageType type;
  private final long[] shape;
  private final ByteBuffer data;

  StoredTensor(String name, String file, StorageType type, long[] shape, ByteBuffer data) {
    this.name = name;
    this.file = file;
    this.type = type;
    this.shape = shape.clone();
    this.data = data.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    long expected;
    try {
      expected = Math.multiplyExact(numel(), (long) type.bytes());
    } catch (ArithmeticException e) {
      expected = -1;
    }
    if (expected < 0 || Arrays.stream(shape).anyMatch(d -> d < 0)) {
      throw new CheckpointException(file + ": tensor " + name + " has an impossible shape " + Arrays.toString(shape));
    }
    if (data.remaining() != expected) {
      throw new CheckpointException(file + ": tensor " + name + " " + Arrays.toString(shape) + " " + type
          + " needs " + expected + " bytes, the file holds " + data.remaining());
    }
  }

  public String name() {
    return name;
  }

  public String file() {
    return file;
  }

  public StorageType type() {
    return type;
  }

  public long[] shape() {
    return shape.clone();
  }

  public long numel() {
    long n = 1;
    for (long d : shape) {
      n = Math.multiplyExact(n, d); // the constructor refused shapes that overflow
    }
    return n;
  }

  /** A fresh read-only little-endian view of the bytes (position 0). */
  public ByteBuffer data() {
    return data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** Reads every element as float32 onto the heap; for small tensors and tests. */
  public float[] toFloatArray() {
    long n = numel();
    if (n > Integer.MAX_VALUE) {
      throw new CheckpointException(name + " is too large for a Java array");
    }
    float[] out = new float[(int) n];
    for (int i = 0; i < out.length; i++) {
      out[i] = get(i);
    }
    return out;
  }

  /** Element i (row-major) as float32. */
  public float get(long i) {
    switch (type) {
      case F32: return data.getFloat(Math.toIntExact(i * 4));
      case BF16: return Float.intBitsToFloat((data.getShort(Math.toIntExact(i * 2)) & 0xffff) << 16);
      case F16: return io.longmem.memory.api.Float16.toFloat(data.getShort(Math.toIntExact(i * 2)));
      default: throw new CheckpointException(file + ": tensor " + name + " has type " + type
          + ", weights must be F32, F16 or BF16");
    }
  }

  @Override
  public String toString() {
    return name + Arrays.toString(shape) + " " + type + " (" + file + ")";
  }
}
