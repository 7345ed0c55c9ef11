package io.longmem.bench;

import io.longmem.memory.faiss.FaissIndex;
import java.util.SplittableRandom;

/**
 * {@code bin/longmem bench faiss}: search throughput of a few index types on clustered vectors,
 * with whichever FAISS build this process loaded; run it once per build
 * ({@code -Dlongmem.faiss.variant=generic|avx2}) to compare them.
 */
public final class FaissBench {
  private FaissBench() {}

  public static void run(int vectors, int dim, int queries, int k, String[] factories) {
    SplittableRandom r = new SplittableRandom(5);
    int clusters = 256;
    float[] centres = new float[clusters * dim];
    for (int i = 0; i < centres.length; i++) {
      centres[i] = (float) (r.nextDouble() * 2 - 1);
    }
    float[] base = sample(r, centres, clusters, vectors, dim);
    float[] q = sample(r, centres, clusters, queries, dim);
    long[] ids = new long[vectors];
    for (int i = 0; i < vectors; i++) {
      ids[i] = i;
    }
    System.out.printf("bench faiss (%s build): %d vectors x %d, %d queries, k %d%n", FaissIndex.variant(), vectors,
        dim, queries, k);
    for (String factory : factories) {
      try (FaissIndex index = FaissIndex.create(dim, factory)) {
        long t0 = System.nanoTime();
        if (!index.isTrained()) {
          index.train(java.util.Arrays.copyOf(base, Math.min(base.length, 65536 * dim)));
        }
        index.add(base, ids);
        double build = (System.nanoTime() - t0) / 1e9;
        FaissIndex.SearchParams p = new FaissIndex.SearchParams(16, 64);
        index.search(java.util.Arrays.copyOf(q, dim * Math.min(queries, 16)), k, p); // warm-up
        t0 = System.nanoTime();
        int rounds = 0;
        while (System.nanoTime() - t0 < 3_000_000_000L) {
          index.search(q, k, p);
          rounds++;
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        System.out.printf("  %-14s build %.1f s, search %.0f queries/s%n", factory, build, rounds * queries / secs);
      }
    }
  }

  private static float[] sample(SplittableRandom r, float[] centres, int clusters, int n, int dim) {
    float[] x = new float[n * dim];
    for (int i = 0; i < n; i++) {
      int c = r.nextInt(clusters);
      for (int d = 0; d < dim; d++) {
        x[i * dim + d] = centres[c * dim + d] + (float) (r.nextDouble() - 0.5) * 0.4f;
      }
    }
    return x;
  }
}
