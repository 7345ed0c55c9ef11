package io.longmem.model.compute;

import io.longmem.io.InputException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The JNI entry points of {@code src/main/native/bf16_jni.cpp}, loaded on first use. The library
 * ships in the jar and links the system's oneDNN (Debian's libdnnl2); without it bfloat16 compute
 * is refused with a message saying what to install. The system property
 * {@code longmem.bf16.max_isa=avx2|avx512_core|avx512_core_bf16} caps the kernels oneDNN may use
 * (tests use it to run the portable kernel that CPUs without AVX512 get).
 */
final class Bf16Native {
  private static final Logger LOG = LoggerFactory.getLogger(Bf16Native.class);
  private static volatile String loaded;
  private static volatile String failure;

  private Bf16Native() {}

  /** Whether the library loads here (loading it if not yet tried); false instead of the exception. */
  static boolean tryLoad() {
    if (loaded != null || failure != null) {
      return loaded != null; // decided: no lock (the memory rounding asks on every window)
    }
    try {
      ensureLoaded();
      return true;
    } catch (InputException e) {
      return false;
    }
  }

  /** Loads the library once; throws an InputException saying why bfloat16 compute cannot run. */
  static synchronized String ensureLoaded() {
    if (loaded != null) {
      return loaded;
    }
    if (failure != null) {
      throw new InputException(failure);
    }
    String os = System.getProperty("os.name").toLowerCase(java.util.Locale.ROOT);
    String arch = System.getProperty("os.arch");
    if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
      failure = "--compute-dtype bfloat16 runs on linux-x86_64 only, not " + os + "-" + arch;
      throw new InputException(failure);
    }
    try (InputStream in = Bf16Native.class.getResourceAsStream("/native/linux-x86_64/libbf16jni.so")) {
      if (in == null) {
        throw new UnsatisfiedLinkError("native/linux-x86_64/libbf16jni.so is missing from the classpath: "
            + "build model-worker with Maven (it compiles src/main/native)");
      }
      Path dir = Files.createTempDirectory("longmem-bf16-");
      Path lib = dir.resolve("libbf16jni.so");
      Files.copy(in, lib, StandardCopyOption.REPLACE_EXISTING);
      dir.toFile().deleteOnExit();
      lib.toFile().deleteOnExit();
      try {
        System.load(lib.toString());
      } catch (UnsatisfiedLinkError e) {
        failure = "--compute-dtype bfloat16 needs oneDNN 2 (libdnnl.so.2; Debian: apt-get install libdnnl2): "
            + e.getMessage();
        throw new InputException(failure);
      }
    } catch (IOException e) {
      failure = "cannot unpack the bfloat16 native library: " + e.getMessage();
      throw new InputException(failure);
    }
    String cap = System.getProperty("longmem.bf16.max_isa", "");
    if (!cap.isEmpty() && !limitIsa(cap)) {
      LOG.warn("could not cap oneDNN at {}", cap);
    }
    loaded = isa();
    LOG.info("bfloat16 native library: oneDNN on {}", loaded);
    return loaded;
  }

  /** The instruction set oneDNN's kernels use here, e.g. avx512_core_amx. */
  static native String isa();

  static native boolean limitIsa(String isa);

  /** A zeroed bfloat16 matrix [n, k] in native memory. */
  static native long create(long n, long k);

  /** Rows [row0, row0 + rows) from a direct buffer of float32 (0), float16 (1) or bfloat16 (2). */
  static native void setRows(long handle, long row0, long rows, ByteBuffer src, int type);

  /** Packs for oneDNN; false where oneDNN has no bfloat16 matmul here (the portable kernel runs). */
  static native boolean pack(long handle);

  static native long bytes(long handle);

  /** y[m, n] = bf16(x[m, k]) @ W^T, float32 out; x and y direct buffers. */
  static native void matmul(long handle, ByteBuffer x, long m, ByteBuffer y, int threads);

  static native void free(long handle);

  /**
   * A float32 tensor's own memory as a direct buffer, for native code to read or write (DJL makes
   * a view contiguous first); fails where DJL would give a Java-heap copy.
   */
  static ByteBuffer memory(ai.djl.ndarray.NDArray a) {
    return memory(a, ai.djl.ndarray.types.DataType.FLOAT32);
  }

  /** {@link #memory(ai.djl.ndarray.NDArray)} of a tensor of the given type. */
  static ByteBuffer memory(ai.djl.ndarray.NDArray a, ai.djl.ndarray.types.DataType type) {
    if (a.getDataType() != type) {
      throw new IllegalArgumentException("native compute takes " + type + " here, not " + a.getDataType());
    }
    ByteBuffer b = a.toByteBuffer(true);
    if (!b.isDirect()) {
      throw new IllegalStateException("DJL gave a heap copy of a tensor: bfloat16 compute needs direct memory");
    }
    return b;
  }

  /**
   * y[m, out] = bf16(silu(g) * u) @ down^T, [g | u] = bf16(x[m, in]) @ gateUp^T: the MLP in one call
   * (gateUp [2 x I, in], down [out, I]); x and y contiguous float32 direct buffers.
   */
  static native void mlp(long gateUp, long down, ByteBuffer x, long m, ByteBuffer y, int threads);

  /**
   * c[batch, m, n] = bf16(a[batch, m, k]) @ bf16(b), float32 out; b is [batch, k, n], or [batch, n, k]
   * read transposed ({@code transB}); contiguous float32 direct buffers.
   */
  static native void bmm(ByteBuffer a, ByteBuffer b, ByteBuffer c, long batch, long m, long n, long k, boolean transB,
      int threads);

  /**
   * Softmax attention in bfloat16 matmuls and float32 softmax, a block of queries at a time: q and
   * out [batch, heads, len, d], k and v [batch, heads, n, d], mask [batch, maskHeads, maskRows, n]
   * (maskHeads 1 or heads, maskRows 1 or len); scores are divided by {@code scale}, masked and
   * floored at {@code floor}. Contiguous float32 direct buffers.
   */
  static native void attend(ByteBuffer q, ByteBuffer k, ByteBuffer v, ByteBuffer mask, ByteBuffer out, long batch,
      long heads, long len, long n, long d, long maskHeads, long maskRows, float scale, float floor, int threads);

  /**
   * Rotary embedding of x [batch, heads, len, d] at positions pos [batch, len] (int64) from the
   * tables cos, sin [positions, d] into out; LLaMA's half-split layout.
   */
  static native void rope(ByteBuffer x, ByteBuffer pos, ByteBuffer cos, ByteBuffer sin, ByteBuffer out, long batch,
      long heads, long len, long d, long positions, int threads);

  /** out[i] = float32(bfloat16(in[i])), round to nearest even, for count floats. */
  static native void roundTrip(ByteBuffer in, ByteBuffer out, long count);

  /** Whether oneDNN has a bfloat16 matmul for this CPU (false: no AVX512). */
  static native boolean bmmSupported();

  /** {calls, ns rounding activations, ns multiplying} since the last call, then reset. */
  static native void takeStats(long[] out);

  /** Seconds to copy {@code bytes} between two direct buffers {@code times} times. */
  static native double copySeconds(ByteBuffer a, ByteBuffer b, long bytes, int times);
}
