package io.longmem.model.memory;

import ai.djl.ndarray.NDManager;
import io.longmem.io.InputException;

/**
 * Which in-process memory a read attends to: {@code dense} (every pair, the reference, quadratic
 * over a long document), {@code knn[:K]} (the top-K pairs per head and query from an inverted
 * file that grows with the memory: linear) or {@code exact-knn[:K]} (the exact top-K by a scan: the
 * reference for knn, linear per query). What the command line's {@code --read-memory} says.
 */
public record ReadMemory(Kind kind, int k) {
  /** The default K: as many pairs per query as the memory service's default top-k. */
  public static final int DEFAULT_K = 128;
  public static final ReadMemory DENSE = new ReadMemory(Kind.DENSE, 0);

  public enum Kind { DENSE, KNN, EXACT_KNN }

  public ReadMemory {
    if (kind != Kind.DENSE && k < 1) {
      throw new InputException("--read-memory " + kind.name().toLowerCase().replace('_', '-') + ": k must be >= 1, got "
          + k);
    }
  }

  /**
   * Parses {@code dense}, {@code knn}, {@code knn:K}, {@code exact-knn[:K]}; a K in the spec wins
   * over {@code defaultK} (--read-k).
   */
  public static ReadMemory parse(String spec, int defaultK) {
    String s = spec.trim();
    int colon = s.indexOf(':');
    String name = colon < 0 ? s : s.substring(0, colon);
    int k = defaultK;
    if (colon >= 0) {
      try {
        k = Integer.parseInt(s.substring(colon + 1));
      } catch (NumberFormatException e) {
        throw new InputException("--read-memory " + spec + ": K must be a whole number (knn:K)");
      }
    }
    return switch (name) {
      case "dense" -> {
        if (colon >= 0) {
          throw new InputException("--read-memory dense takes no K (it attends to every pair)");
        }
        yield DENSE;
      }
      case "knn" -> new ReadMemory(Kind.KNN, k);
      case "exact-knn" -> new ReadMemory(Kind.EXACT_KNN, k);
      default -> throw new InputException("--read-memory must be dense, knn[:K] or exact-knn[:K], got '" + spec + "'");
    };
  }

  /** A fresh memory of this kind for a batch of {@code batch} rows. */
  public Memory create(NDManager manager, int batch, int heads, int headDim) {
    return kind == Kind.DENSE ? new DenseMemory(manager) : new KnnMemory(batch, heads, headDim, k, kind == Kind.EXACT_KNN);
  }

  @Override
  public String toString() {
    return kind == Kind.DENSE ? "dense" : kind.name().toLowerCase().replace('_', '-') + ":" + k;
  }
}
