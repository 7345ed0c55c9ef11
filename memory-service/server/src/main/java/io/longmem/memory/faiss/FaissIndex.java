package io.longmem.memory.faiss;

import io.longmem.io.InputException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A FAISS index over float vectors, built from a factory string ("Flat", "HNSW32",
 * "IVF1024,Flat", "IVF1024,PQ20", ...). Vectors carry 64-bit ids chosen by the caller (Flat and
 * HNSW indexes are wrapped in an IDMap for that). Inner product is the default metric: attention
 * scores are q.k.
 *
 * <p>Every input is checked here before it crosses JNI (dimensions, finite values, k, ids):
 * FAISS errors raised inside its OpenMP loops would abort the JVM. Searches may run from many
 * threads at once; adding, training, writing and searches that set efSearch take the index
 * exclusively.
 */
public final class FaissIndex implements AutoCloseable {
  /** Largest k a search may ask for. */
  public static final int MAX_K = 1 << 16;

  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private final int dim;
  private final String description;
  private long handle;

  private FaissIndex(long handle, String description) {
    this.handle = handle;
    this.dim = FaissNative.dim(handle);
    this.description = description;
  }

  /**
   * Search-time knobs; 0 keeps the index's own setting. {@code idRanges}, if not null, restricts
   * the search to ids in sorted, disjoint [begin, end) ranges (flattened begin, end pairs).
   */
  public record SearchParams(int nprobe, int efSearch, long[] idRanges) {
    public static final SearchParams DEFAULT = new SearchParams(0, 0, null);

    public SearchParams(int nprobe, int efSearch) {
      this(nprobe, efSearch, null);
    }

    public SearchParams {
      if (nprobe < 0 || efSearch < 0) {
        throw new InputException("nprobe and efSearch must be >= 0, got " + nprobe + ", " + efSearch);
      }
      if (idRanges != null) {
        if (idRanges.length % 2 != 0) {
          throw new InputException("id ranges come in [begin, end) pairs");
        }
        for (int i = 0; i < idRanges.length; i += 2) {
          if (idRanges[i] >= idRanges[i + 1] || (i > 0 && idRanges[i] < idRanges[i - 1])) {
            throw new InputException("id ranges must be non-empty, sorted and disjoint");
          }
        }
      }
    }
  }

  /**
   * Top-k results of n queries, row-major [n, k]: scores (inner products, larger is closer) and
   * ids; where fewer than k vectors were found the row ends with id -1.
   */
  public record Result(int n, int k, float[] scores, long[] ids) {
    public long id(int query, int rank) {
      return ids[query * k + rank];
    }

    public float score(int query, int rank) {
      return scores[query * k + rank];
    }
  }

  /** A new, empty inner-product index. */
  public static FaissIndex create(int dim, String factory) {
    return create(dim, factory, true);
  }

  public static FaissIndex create(int dim, String factory, boolean innerProduct) {
    if (dim <= 0) {
      throw new InputException("dimension must be positive, got " + dim);
    }
    if (factory == null || factory.isBlank()) {
      throw new InputException("index factory string is empty");
    }
    return new FaissIndex(FaissNative.create(dim, factory.trim(), innerProduct), factory.trim());
  }

  /**
   * Reads an index written by {@link #write} (or by Python faiss). With {@code mmap}, IVF inverted
   * lists stay on disk and are paged in as searched; other index types load into memory.
   */
  public static FaissIndex read(Path file, boolean mmap) throws IOException {
    if (!Files.isRegularFile(file)) {
      throw new NoSuchFileException(file.toString(), null, "FAISS index not found");
    }
    try {
      return new FaissIndex(FaissNative.read(file.toAbsolutePath().toString(), mmap), "read from " + file);
    } catch (FaissException e) {
      throw new IOException(file + ": not a readable FAISS index (truncated or corrupted?): " + e.getMessage(), e);
    }
  }

  /**
   * What is wrong with this index as the index of a shard of {@code rows} rows, or null: its
   * vector count, metric (inner product), ids (each row once, within [0, rows)) and structure
   * (HNSW neighbor ids and levels, IVF lists against the quantizer). FAISS trusts what it reads,
   * and a damaged index that reads cleanly would crash the first search (inside OpenMP, where
   * even FAISS's own checks abort the process), so a shard checks each index once at load.
   */
  public String validate(long rows) {
    if (rows < 0) {
      return "a shard of " + rows + " rows";
    }
    return withRead(() -> FaissNative.validate(handle, rows));
  }

  /** An independent copy (trained state and vectors); e.g. a trained, empty template for new shards. */
  public FaissIndex copy() {
    return withRead(() -> new FaissIndex(FaissNative.cloneIndex(handle), description));
  }

  /** Which FAISS build this process loaded: "avx2" or "generic". */
  public static String variant() {
    return FaissNative.VARIANT;
  }

  /** Number of OpenMP threads FAISS uses inside one call (process-wide). */
  public static void setThreads(int n) {
    if (n < 1) {
      throw new InputException("threads must be >= 1, got " + n);
    }
    FaissNative.setThreads(n);
  }

  public int dim() {
    return dim;
  }

  public String description() {
    return description;
  }

  public long size() {
    return withRead(() -> FaissNative.ntotal(handle));
  }

  public boolean isTrained() {
    return withRead(() -> FaissNative.isTrained(handle));
  }

  /** Whether search scores are exact (a flat index): approximate ones are worth re-scoring. */
  public boolean isExact() {
    return withRead(() -> FaissNative.isExact(handle));
  }

  public boolean isInnerProduct() {
    return withRead(() -> FaissNative.isInnerProduct(handle));
  }

  /** Trains (IVF centroids, PQ codebooks) on a sample of vectors [n, dim]. */
  public void train(float[] vectors) {
    long n = rows(vectors, "training vectors");
    withWrite(() -> {
      FaissNative.train(handle, n, vectors);
      return null;
    });
  }

  /** Adds vectors [n, dim] under the given ids (one per vector). */
  public void add(float[] vectors, long[] ids) {
    long n = rows(vectors, "vectors");
    add(vectors, 0, (int) n, ids);
  }

  /**
   * Adds the n vectors [n, dim] that start at float {@code offset} of {@code vectors} (a run inside
   * a larger array, such as one head of a head-major block), under the given ids.
   */
  public void add(float[] vectors, int offset, int n, long[] ids) {
    if (vectors == null || offset < 0 || n < 1 || offset + (long) n * dim > vectors.length) {
      throw new InputException(n + " vectors of " + dim + " floats at offset " + offset + " do not lie in "
          + (vectors == null ? 0 : vectors.length) + " floats");
    }
    if (ids == null || ids.length != n) {
      throw new InputException((ids == null ? 0 : ids.length) + " ids for " + n + " vectors");
    }
    for (int i = offset; i < offset + n * dim; i++) {
      if (!Float.isFinite(vectors[i])) {
        throw new InputException("vectors: value " + vectors[i] + " at vector " + (i - offset) / dim
            + ", component " + (i - offset) % dim + " is not finite");
      }
    }
    withWrite(() -> {
      if (!FaissNative.isTrained(handle)) {
        throw new IllegalStateException("index " + description + " must be trained before vectors are added");
      }
      FaissNative.addWithIds(handle, n, vectors, offset, ids);
      return null;
    });
  }

  public Result search(float[] queries, int k) {
    return search(queries, k, SearchParams.DEFAULT);
  }

  /** The k best vectors for each query [n, dim]. */
  public Result search(float[] queries, int k, SearchParams params) {
    long n = rows(queries, "queries");
    if (k < 1 || k > MAX_K) {
      throw new InputException("k must be in [1, " + MAX_K + "], got " + k);
    }
    if (n * k > Integer.MAX_VALUE) {
      throw new InputException(n + " queries x k " + k + " results do not fit one call");
    }
    float[] scores = new float[(int) (n * k)];
    long[] ids = new long[(int) (n * k)];
    // an efSearch is set on the index itself (FAISS 1.7.3 ignores part of the parameter): exclusive
    java.util.function.Function<java.util.function.Supplier<Result>, Result> access =
        params.efSearch() > 0 ? this::withWrite : this::withRead;
    return access.apply(() -> {
      if (!FaissNative.isTrained(handle)) {
        throw new IllegalStateException("index " + description + " is not trained");
      }
      FaissNative.search(handle, n, queries, k, params.nprobe(), params.efSearch(), params.idRanges(), scores, ids);
      return new Result((int) n, k, scores, ids);
    });
  }

  /** Writes the index to a temporary file beside {@code file}, then renames it into place. */
  public void write(Path file) throws IOException {
    io.longmem.io.AtomicFiles.write(file, tmp -> withRead(() -> {
      FaissNative.write(handle, tmp.toString());
      return null;
    }));
  }

  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      if (handle != 0) {
        FaissNative.free(handle);
        handle = 0;
      }
    } finally {
      lock.writeLock().unlock();
    }
  }

  private long rows(float[] vectors, String what) {
    if (vectors == null || vectors.length == 0) {
      throw new InputException(what + ": empty");
    }
    if (vectors.length % dim != 0) {
      throw new InputException(what + ": " + vectors.length + " floats is not a whole number of "
          + dim + "-dimensional vectors");
    }
    for (int i = 0; i < vectors.length; i++) {
      if (!Float.isFinite(vectors[i])) {
        throw new InputException(what + ": value " + vectors[i] + " at vector " + i / dim
            + ", component " + i % dim + " is not finite");
      }
    }
    return vectors.length / dim;
  }

  private <T> T withRead(java.util.function.Supplier<T> body) {
    lock.readLock().lock();
    try {
      ensureOpen();
      return body.get();
    } finally {
      lock.readLock().unlock();
    }
  }

  private <T> T withWrite(java.util.function.Supplier<T> body) {
    lock.writeLock().lock();
    try {
      ensureOpen();
      return body.get();
    } finally {
      lock.writeLock().unlock();
    }
  }

  private void ensureOpen() {
    if (handle == 0) {
      throw new IllegalStateException("index " + description + " is closed");
    }
  }
}
