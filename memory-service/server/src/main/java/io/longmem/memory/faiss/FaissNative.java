package io.longmem.memory.faiss;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The JNI entry points of {@code src/main/native/faiss_jni.cpp}. The library ships inside the jar
 * (FAISS and OpenBLAS linked in statically, libgomp beside it) and is unpacked to a private
 * temporary directory on first use, so no FAISS needs to be installed where it runs. Two builds
 * may ship: an AVX2 one, loaded where the CPU has AVX2 and FMA, and a generic one; the system
 * property {@code longmem.faiss.variant=generic|avx2} forces a choice.
 */
final class FaissNative {
  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(FaissNative.class);
  /** The variant loaded: "avx2" or "generic". */
  static final String VARIANT;

  static {
    VARIANT = load();
  }

  private FaissNative() {}

  private static String load() {
    String os = System.getProperty("os.name").toLowerCase(java.util.Locale.ROOT);
    String arch = System.getProperty("os.arch");
    if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
      throw new UnsatisfiedLinkError("longmem's FAISS library is built for linux-x86_64, not " + os + "-" + arch);
    }
    String wanted = System.getProperty("longmem.faiss.variant", "");
    boolean shipped = FaissNative.class.getResource("/native/linux-x86_64/libfaissjni_avx2.so") != null;
    boolean avx2 = wanted.equals("avx2") || (wanted.isEmpty() && shipped && cpuHas("avx2", "fma"));
    String library = avx2 ? "libfaissjni_avx2.so" : "libfaissjni.so";
    try {
      Path dir = Files.createTempDirectory("longmem-faiss-");
      dir.toFile().deleteOnExit();
      for (String f : new String[] {"libgomp.so.1", library}) {
        try (InputStream in = FaissNative.class.getResourceAsStream("/native/linux-x86_64/" + f)) {
          if (in == null) {
            throw new UnsatisfiedLinkError("native/linux-x86_64/" + f + " is missing from the classpath: "
                + "build memory-service with Maven (it compiles src/main/native)");
          }
          Path p = dir.resolve(f);
          Files.copy(in, p, StandardCopyOption.REPLACE_EXISTING);
          p.toFile().deleteOnExit();
        }
      }
      System.load(dir.resolve(library).toString()); // finds libgomp beside it ($ORIGIN)
      LOG.info("FAISS library: {} build", avx2 ? "AVX2" : "generic");
      return avx2 ? "avx2" : "generic";
    } catch (IOException e) {
      throw new UncheckedIOException("cannot unpack the FAISS native library", e);
    }
  }

  /** Whether /proc/cpuinfo lists every flag. */
  private static boolean cpuHas(String... flags) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
        if (line.startsWith("flags")) {
          java.util.Set<String> have = new java.util.HashSet<>(java.util.Arrays.asList(line.split("[\\s:]+")));
          return java.util.Arrays.stream(flags).allMatch(have::contains);
        }
      }
    } catch (IOException e) {
      // no cpuinfo: the generic build is always safe
    }
    return false;
  }

  static native long create(int d, String factory, boolean innerProduct);

  static native void train(long handle, long n, float[] x);

  /** Adds the n vectors [n, d] that start at float {@code offset} of x. */
  static native void addWithIds(long handle, long n, float[] x, int offset, long[] ids);

  /** @param ranges sorted disjoint [begin, end) id ranges to restrict to, flattened; null: all ids */
  static native void search(long handle, long n, float[] x, int k, int nprobe, int efSearch, long[] ranges,
      float[] distances, long[] labels);

  static native long cloneIndex(long handle);

  static native long ntotal(long handle);

  static native int dim(long handle);

  static native boolean isTrained(long handle);

  static native boolean isInnerProduct(long handle);

  static native boolean isExact(long handle);

  /** What is wrong with the index for a shard of {@code rows} rows (structure, ids, metric), or null. */
  static native String validate(long handle, long rows);

  static native void write(long handle, String path);

  static native long read(String path, boolean mmap);

  static native void free(long handle);

  static native void setThreads(int n);

  static native void innerProducts(float[] query, int qOff, int dim, long[] addresses, int n, boolean half,
      float[] out);

  static native long address(java.nio.ByteBuffer direct);

  static native void gather(long[] addresses, int n, int bytes, byte[] out, int outOff);
}
