package io.longmem.bench;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The benchmarks' memory: a collection of clustered synthetic keys (a mixture of Gaussians per
 * head) and random values, written shard by shard as a job writes the model's memory, and queries
 * from the same mixture. Apart from {@link MemoryBench} because {@link DecodeBench} writes its
 * collections the same way, and the writing is no part of what either measures.
 */
public final class SyntheticCollection {
  // its progress lines are the memory bench's, as they were before the writing moved here
  private static final Logger LOG = LoggerFactory.getLogger(MemoryBench.class);

  private SyntheticCollection() {}

  /**
   * Writes a collection of clustered synthetic keys for one memory layer into {@code o.dir()}, as
   * if written by the model with this fingerprint (for benchmarks that decode against it): tokens,
   * heads, head_dim, clusters, shard size, index factory and float16 from the options.
   */
  public static void write(MemoryBench.Options o, int layer, String fingerprint, int trainingRows) throws IOException {
    ShardLayout layout = new ShardLayout(List.of(layer), o.heads(), o.headDim(),
        o.float16() ? MemoryBlock.Storage.FLOAT16 : MemoryBlock.Storage.FLOAT32);
    Centres centres = new Centres(o.heads(), o.headDim(), o.clusters(), 1);
    long t0 = System.nanoTime();
    int width = layout.width();
    int chunk = 4096;
    try (CollectionWriter w = CollectionWriter.create(o.dir(), fingerprint, layout,
        o.float16() ? "float16" : "float32", o.factory()).trainingRows(trainingRows)) {
      List<Manifest.ShardEntry> shards = new ArrayList<>();
      long written = 0;
      int s = 0;
      while (written < o.tokens()) {
        long shardTokens = Math.min(o.shardTokens(), o.tokens() - written);
        String document = "doc-" + s;
        try (ShardWriter sw = w.newShard(String.format("shard-%05d", s))) {
          for (long done = 0; done < shardTokens; done += chunk) {
            int n = (int) Math.min(chunk, shardTokens - done);
            float[] keys = new float[n * width];
            float[] values = new float[n * width];
            centres.fill(keys, values, n, written + done);
            int[] positions = new int[n];
            for (int i = 0; i < n; i++) {
              positions[i] = (int) (done + i);
            }
            sw.append(document, List.of(new MemoryBlock(layer, document, positions, o.heads(), o.headDim(), keys,
                values, layout.storage())));
            if ((written + done) % (1 << 18) == 0) {
              double secs = (System.nanoTime() - t0) / 1e9;
              LOG.info("writing the bench collection: {} / {} tokens, {} tokens/s", written + done, o.tokens(),
                  (long) ((written + done) / Math.max(secs, 1e-9)));
            }
          }
          shards.add(sw.finish());
        }
        written += shardTokens;
        s++;
      }
      w.commit(shards);
    }
    System.out.printf("built the bench collection (%d tokens) in %.0f s%n", o.tokens(), (System.nanoTime() - t0) / 1e9);
  }

  /** A mixture of Gaussians per head: keys are a centre plus noise; queries likewise. */
  static final class Centres {
    private final int heads;
    private final int dim;
    private final float[][] centres; // [head][cluster * dim]
    private final int clusters;
    private final float[] noise; // a table of Gaussian numbers, read at random offsets (fast)

    Centres(int heads, int dim, int clusters, long seed) {
      this.heads = heads;
      this.dim = dim;
      this.clusters = clusters;
      Random r = new Random(seed);
      centres = new float[heads][clusters * dim];
      for (float[] c : centres) {
        for (int i = 0; i < c.length; i++) {
          c[i] = (float) r.nextGaussian();
        }
      }
      noise = new float[1 << 20];
      for (int i = 0; i < noise.length; i++) {
        noise[i] = (float) r.nextGaussian() * 0.5f;
      }
    }

    /**
     * n tokens' keys and values, head-major [heads, n, dim] as a {@link MemoryBlock} holds them;
     * drawn token by token (each token's heads in turn), so a seed gives the same pairs whatever
     * the layout.
     */
    void fill(float[] keys, float[] values, int n, long seed) {
      SplittableRandom r = new SplittableRandom(seed);
      for (int t = 0; t < n; t++) {
        for (int h = 0; h < heads; h++) {
          int c = r.nextInt(clusters);
          int off = r.nextInt(noise.length - dim);
          int voff = r.nextInt(noise.length - dim);
          int base = (h * n + t) * dim;
          for (int d = 0; d < dim; d++) {
            keys[base + d] = centres[h][c * dim + d] + noise[off + d];
            values[base + d] = noise[voff + d] * 2f;
          }
        }
      }
    }

    /** [heads, n, dim] queries from the same mixture. */
    float[] queries(int n, long seed) {
      SplittableRandom r = new SplittableRandom(seed);
      float[] q = new float[heads * n * dim];
      for (int h = 0; h < heads; h++) {
        for (int i = 0; i < n; i++) {
          int c = r.nextInt(clusters);
          int off = r.nextInt(noise.length - dim);
          for (int d = 0; d < dim; d++) {
            q[(h * n + i) * dim + d] = centres[h][c * dim + d] + noise[off + d];
          }
        }
      }
      return q;
    }
  }
}
