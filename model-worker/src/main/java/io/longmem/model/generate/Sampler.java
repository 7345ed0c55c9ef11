package io.longmem.model.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Picks the next token from one row of logits, greedily or by seeded sampling. */
final class Sampler {
  private final GenerationOptions options;
  private final SplittableRandom random;

  Sampler(GenerationOptions options) {
    this.options = options;
    this.random = new SplittableRandom(options.seed());
  }

  int next(float[] logits) {
    if (options.greedy()) {
      return argMax(logits);
    }
    int n = logits.length;
    double[] scaled = new double[n];
    for (int i = 0; i < n; i++) {
      scaled[i] = logits[i] / (double) options.temperature();
    }
    Integer[] order = new Integer[n];
    for (int i = 0; i < n; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (a, b) -> Double.compare(scaled[b], scaled[a]));
    int keep = options.topK() > 0 ? Math.min(options.topK(), n) : n;
    double max = scaled[order[0]];
    double[] p = new double[keep];
    double sum = 0;
    for (int i = 0; i < keep; i++) {
      p[i] = Math.exp(scaled[order[i]] - max);
      sum += p[i];
    }
    // top-p: the smallest prefix whose mass reaches top_p (the top token always stays)
    double cumulative = 0;
    int cut = keep;
    for (int i = 0; i < keep; i++) {
      cumulative += p[i] / sum;
      if (cumulative >= options.topP()) {
        cut = i + 1;
        break;
      }
    }
    double kept = 0;
    for (int i = 0; i < cut; i++) {
      kept += p[i];
    }
    double r = random.nextDouble() * kept;
    for (int i = 0; i < cut; i++) {
      r -= p[i];
      if (r < 0) {
        return order[i];
      }
    }
    return order[cut - 1];
  }

  static int argMax(float[] logits) {
    int best = 0;
    for (int i = 1; i < logits.length; i++) {
      if (logits[i] > logits[best]) {
        best = i;
      }
    }
    return best;
  }
}
