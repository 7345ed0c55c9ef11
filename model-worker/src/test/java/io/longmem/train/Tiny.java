package io.longmem.train;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.LongLlamaConfig;
import java.util.List;
import java.util.Random;

/** Tiny models and batches for the training tests. */
final class Tiny {
  static final int VOCAB = 64;

  private Tiny() {}

  /** 3 layers, hidden 16, 2 heads, memory in layer 1, window 32. */
  static LongLlamaConfig config() {
    return HfConfig.newModel(VOCAB, 16, 2, 32, 3, 32, List.of(1));
  }

  static LongLlama model(DataType type, long seed) {
    return Init.fresh(config(), NDManager.newBaseManager(Device.cpu()), type, seed);
  }

  static long[][] ids(int batch, int length, long seed) {
    Random r = new Random(seed);
    long[][] ids = new long[batch][length];
    for (long[] row : ids) {
      for (int t = 0; t < length; t++) {
        row[t] = r.nextInt(VOCAB);
      }
    }
    return ids;
  }

  /** A batch whose every position but each row's last predicts the next token of its row. */
  static Batch batch(long[][] ids) {
    int length = ids[0].length;
    int n = ids.length * (length - 1);
    int[] positions = new int[n];
    long[] targets = new long[n];
    int i = 0;
    for (int b = 0; b < ids.length; b++) {
      for (int t = 0; t + 1 < length; t++) {
        positions[i] = b * length + t;
        targets[i++] = ids[b][t + 1];
      }
    }
    return new Batch(ids, positions, targets);
  }

  static float[] floats(NDArray a) {
    try (NDArray f = a.toType(DataType.FLOAT32, true)) {
      return f.toFloatArray();
    }
  }

  static double maxAbsDiff(float[] a, float[] b) {
    double d = 0;
    for (int i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i] - b[i]));
    }
    return d;
  }
}
