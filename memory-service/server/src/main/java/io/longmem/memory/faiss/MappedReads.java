package io.longmem.memory.faiss;

import java.nio.ByteBuffer;

/**
 * Reads of vectors scattered over memory-mapped shard files, in native code: the exact inner
 * products of the refine step and the gathering of an answer's keys, values and positions. The
 * rows a search touches lie anywhere in gigabytes, so each read is a cache and TLB miss; the
 * native loops prefetch the next rows while they work, which Java cannot. Measured on the bench
 * collection (bench memory, decode step): re-scoring took 42.7 ms of CPU per request in Java,
 * 9 ms here.
 *
 * <p>Addresses come from {@link #address} of a buffer that the caller keeps reachable (and thus
 * mapped) while it reads; a wrong address would crash the JVM, so only the owner of a mapping
 * computes them, within its bounds. A file truncated under a mapping faults (SIGBUS) when its
 * lost pages are read: the native loops catch that fault and throw {@link MappedReadException}.
 */
public final class MappedReads {
  private MappedReads() {}

  /** The address of a direct buffer's first byte. */
  public static long address(ByteBuffer direct) {
    if (!direct.isDirect()) {
      throw new IllegalArgumentException("not a direct buffer");
    }
    long a = FaissNative.address(direct);
    if (a == 0) {
      throw new IllegalStateException("the JVM gives no address for this buffer");
    }
    return a;
  }

  /**
   * out[j] = query[qOff .. qOff + dim) . the vector at addresses[j], for j < n.
   *
   * @param float16 vectors are little-endian float16 (else float32)
   * @throws MappedReadException if a vector's file was truncated under its mapping
   */
  public static void innerProducts(float[] query, int qOff, int dim, long[] addresses, int n, boolean float16,
      float[] out) {
    if (dim <= 0 || qOff < 0 || qOff > query.length - dim) {
      throw new IllegalArgumentException("query: " + dim + " floats from " + qOff + " of " + query.length);
    }
    if (n < 0 || n > addresses.length || n > out.length) {
      throw new IllegalArgumentException(n + " vectors, " + addresses.length + " addresses, " + out.length
          + " scores");
    }
    if (n > 0) {
      FaissNative.innerProducts(query, qOff, dim, addresses, n, float16, out);
    }
  }

  /**
   * Copies {@code bytes} bytes from each of addresses[0..n), one after another, into out from outOff.
   *
   * @throws MappedReadException if a piece's file was truncated under its mapping
   */
  public static void gather(long[] addresses, int n, int bytes, byte[] out, int outOff) {
    if (bytes <= 0 || n < 0 || n > addresses.length || outOff < 0 || (long) n * bytes > out.length - outOff) {
      throw new IllegalArgumentException(n + " pieces of " + bytes + " bytes into " + out.length + " from " + outOff
          + " (" + addresses.length + " addresses)");
    }
    if (n > 0) {
      FaissNative.gather(addresses, n, bytes, out, outOff);
    }
  }
}
