package io.longmem.model.compute;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.longmem.model.checkpoint.StoredTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A weight matrix [n, k] held once in bfloat16 in native memory, packed at load for oneDNN's
 * matmul (AMX or AVX512-BF16 where the CPU has them, a portable kernel elsewhere). A call rounds
 * the float32 activations to bfloat16 and writes float32 results straight into a new DJL array:
 * both sides are the tensors' own memory, no Java-heap copy. Owns the native memory until closed.
 */
public final class Bf16Matrix implements Projection {
  private final long n;
  private final long k;
  private long handle;

  private Bf16Matrix(long n, long k) {
    Bf16Native.ensureLoaded();
    this.n = n;
    this.k = k;
    this.handle = Bf16Native.create(n, k);
  }

  /** The tensors [n_i, k] stacked along their rows (fused projections), converted from F32, F16 or BF16. */
  public static Bf16Matrix of(List<StoredTensor> parts) {
    long k = parts.get(0).shape()[1];
    long n = 0;
    for (StoredTensor t : parts) {
      if (t.shape().length != 2 || t.shape()[1] != k) {
        throw new IllegalArgumentException(t + ": expected [rows, " + k + "]");
      }
      n += t.shape()[0];
    }
    Bf16Matrix m = new Bf16Matrix(n, k);
    try {
      long row = 0;
      for (StoredTensor t : parts) {
        int type;
        switch (t.type()) {
          case F32: type = 0; break;
          case F16: type = 1; break;
          case BF16: type = 2; break;
          default: throw new IllegalArgumentException(t + ": weights must be F32, F16 or BF16");
        }
        Bf16Native.setRows(m.handle, row, t.shape()[0], direct(t.data()), type);
        row += t.shape()[0];
      }
      return m.pack();
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  /** A matrix from float32 values [n, k] row-major (tests and benchmarks). */
  public static Bf16Matrix of(float[] w, int n, int k) {
    ByteBuffer b = ByteBuffer.allocateDirect(w.length * 4).order(ByteOrder.nativeOrder());
    b.asFloatBuffer().put(w);
    Bf16Matrix m = new Bf16Matrix(n, k);
    try {
      Bf16Native.setRows(m.handle, 0, n, b, 0);
      return m.pack();
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  private boolean packedFlag;
  /** Nanoseconds spent in {@link #apply}, all of it (DJL views and output, native call). */
  private static final java.util.concurrent.atomic.LongAdder APPLY_NS = new java.util.concurrent.atomic.LongAdder();

  private Bf16Matrix pack() {
    packedFlag = Bf16Native.pack(handle);
    return this;
  }

  /** Whether oneDNN multiplies (false: the portable kernel). */
  public boolean onednn() {
    return packedFlag;
  }

  /** The instruction set oneDNN uses here (e.g. avx512_core_amx); loads the library. */
  public static String isa() {
    return Bf16Native.ensureLoaded();
  }

  @Override
  public NDArray apply(NDArray x) {
    Shape s = x.getShape();
    if (handle == 0) {
      throw new IllegalStateException("bfloat16 matrix used after close");
    }
    if (x.getDataType() != DataType.FLOAT32 || s.dimension() == 0 || s.get(s.dimension() - 1) != k) {
      throw new IllegalArgumentException("bfloat16 matmul of [" + n + ", " + k + "] by " + s + " " + x.getDataType());
    }
    long t0 = System.nanoTime();
    long m = s.size() / k;
    long[] dims = s.getShape().clone(); // getShape() is the Shape's own array
    dims[dims.length - 1] = n;
    NDArray y = x.getManager().create(new Shape(dims), DataType.FLOAT32);
    if (m > 0) {
      Bf16Native.matmul(handle, Bf16Native.memory(x), m, Bf16Native.memory(y), threads());
    }
    APPLY_NS.add(System.nanoTime() - t0);
    return y;
  }

  /**
   * The MLP of a layer in one native call: down(silu(g) * u) where [g | u] = gateUp(x), as
   * {@code down.apply(silu(g).mul(u))} computes it but without the float32 [.., 2 x intermediate]
   * tensor and its split, activation and product in DJL (native buffers hold them, reused).
   *
   * @param x [..., in] float32; returns [..., out] float32 on x's manager
   */
  public static NDArray mlp(Bf16Matrix gateUp, Bf16Matrix down, NDArray x) {
    Shape s = x.getShape();
    if (gateUp.handle == 0 || down.handle == 0) {
      throw new IllegalStateException("bfloat16 matrix used after close");
    }
    if (x.getDataType() != DataType.FLOAT32 || s.dimension() == 0 || s.get(s.dimension() - 1) != gateUp.k
        || gateUp.n != 2L * down.k) {
      throw new IllegalArgumentException("bfloat16 MLP of [" + gateUp.n + ", " + gateUp.k + "] and [" + down.n + ", "
          + down.k + "] by " + s + " " + x.getDataType());
    }
    long t0 = System.nanoTime();
    long m = s.size() / gateUp.k;
    long[] dims = s.getShape().clone();
    dims[dims.length - 1] = down.n;
    NDArray y = x.getManager().create(new Shape(dims), DataType.FLOAT32);
    if (m > 0) {
      Bf16Native.mlp(gateUp.handle, down.handle, Bf16Native.memory(x), m, Bf16Native.memory(y), threads());
    }
    APPLY_NS.add(System.nanoTime() - t0);
    return y;
  }

  /** Adds time spent in a bfloat16 matmul outside {@link #apply} (the attention's). */
  static void addApplyNanos(long ns) {
    APPLY_NS.add(ns);
  }

  /**
   * Where the bfloat16 matmuls' time went since the last call (then reset): calls, and seconds in
   * all of {@link #apply}, rounding activations, multiplying; the rest of apply is the cost of
   * handing DJL tensors to native code (views, output allocation, contiguous copies).
   */
  public static double[] takeStats() {
    long[] s = new long[3];
    Bf16Native.takeStats(s);
    return new double[] {s[0], APPLY_NS.sumThenReset() / 1e9, s[1] / 1e9, s[2] / 1e9};
  }

  @Override
  public long bytes() {
    return Bf16Native.bytes(handle);
  }

  @Override
  public synchronized void close() {
    if (handle != 0) {
      Bf16Native.free(handle);
      handle = 0;
    }
  }

  /** The threads DJL's PyTorch uses (ai.djl.pytorch.num_threads), else every available core. */
  static int threads() {
    String t = System.getProperty("ai.djl.pytorch.num_threads");
    if (t != null) {
      try {
        return Math.max(1, Integer.parseInt(t.trim()));
      } catch (NumberFormatException e) {
        // DJL reports its own property's error; use the default here
      }
    }
    return Runtime.getRuntime().availableProcessors();
  }

  /**
   * Seconds to copy {@code bytes} between two native buffers {@code times} times (the memory
   * bandwidth that bounds decoding).
   */
  public static double copySeconds(long bytes, int times) {
    Bf16Native.ensureLoaded();
    ByteBuffer a = ByteBuffer.allocateDirect(Math.toIntExact(bytes));
    ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(bytes));
    Bf16Native.copySeconds(a, b, bytes, 1); // touch the pages
    return Bf16Native.copySeconds(a, b, bytes, times);
  }

  private static ByteBuffer direct(ByteBuffer b) {
    if (b.isDirect()) {
      return b;
    }
    ByteBuffer d = ByteBuffer.allocateDirect(b.remaining()).order(ByteOrder.LITTLE_ENDIAN);
    d.put(b.duplicate()).flip();
    return d;
  }
}
