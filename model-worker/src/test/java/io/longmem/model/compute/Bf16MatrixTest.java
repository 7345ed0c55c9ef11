package io.longmem.model.compute;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.longmem.io.InputException;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The bfloat16 matrix against float32 arithmetic in Java on bfloat16-rounded inputs (which it must
 * equal up to float32 summation order) and against DJL's float32 matmul on the unrounded inputs
 * (which it may miss only by bfloat16 rounding). Row counts cover decode (1), odd shapes and a
 * strided (non-contiguous) input. Run twice by Maven: on oneDNN as the CPU allows, and capped at
 * AVX2 (longmem.bf16.max_isa), where the portable kernel runs.
 */
class Bf16MatrixTest {
  private static final SplittableRandom RANDOM = new SplittableRandom(42);

  @Test
  void multipliesAsFloat32OnBfloat16RoundedInputs() {
    int n = 67;
    int k = 130;
    float[] w = random(n * k);
    try (NDManager nd = NDManager.newBaseManager(); Bf16Matrix m = Bf16Matrix.of(w, n, k)) {
      // oneDNN 2.6 has bfloat16 matmuls from AVX512 up: below (a CPU with AVX2 only, or the cap) the portable kernel
      boolean portable = "avx2".equals(System.getProperty("longmem.bf16.max_isa"))
          || !Bf16Matrix.isa().startsWith("avx512");
      assertEquals(!portable, m.onednn(), "oneDNN used unless below AVX512 (isa " + Bf16Matrix.isa() + ")");
      for (int rows : new int[] {1, 3, 64, 257}) {
        float[] x = random(rows * k);
        NDArray y = m.apply(nd.create(x, new Shape(1, rows, k)));
        assertEquals(new Shape(1, rows, n), y.getShape());
        float[] got = y.toFloatArray();
        float[] exact = reference(round(x), round(w), rows, n, k);
        float[] f32 = nd.create(x, new Shape(rows, k)).matMul(nd.create(w, new Shape(n, k)).transpose()).toFloatArray();
        double worstExact = 0;
        double worstF32 = 0;
        for (int i = 0; i < got.length; i++) {
          assertTrue(Float.isFinite(got[i]));
          worstExact = Math.max(worstExact, Math.abs(got[i] - exact[i]));
          worstF32 = Math.max(worstF32, Math.abs(got[i] - f32[i]));
        }
        assertTrue(worstExact < 1e-4, rows + " rows: " + worstExact + " from float32 sums of the rounded inputs");
        // inputs in [-1, 1), k = 130: bfloat16's 2^-9 relative rounding of both factors
        assertTrue(worstF32 < 0.05, rows + " rows: " + worstF32 + " from float32");
        assertTrue(worstF32 > 1e-6, rows + " rows: identical to float32, so not bfloat16 compute");
      }
    }
  }

  @Test
  void readsStridedInputs() {
    int n = 16;
    int k = 32;
    float[] w = random(n * k);
    try (NDManager nd = NDManager.newBaseManager(); Bf16Matrix m = Bf16Matrix.of(w, n, k)) {
      float[] x = random(k * 5);
      NDArray t = nd.create(x, new Shape(k, 5)).transpose(); // [5, k], not contiguous
      float[] got = m.apply(t).toFloatArray();
      float[] exact = reference(round(t.toFloatArray()), round(w), 5, n, k);
      assertArrayEquals(exact, got, 1e-4f);
    }
  }

  @Test
  void leavesItsInputAsItWas() {
    try (NDManager nd = NDManager.newBaseManager(); Bf16Matrix m = Bf16Matrix.of(random(8 * 4), 8, 4)) {
      NDArray x = nd.randomUniform(-1f, 1f, new Shape(3, 4));
      float[] first = m.apply(x).toFloatArray();
      NDArray y = m.apply(x);
      y.close();
      assertEquals(new Shape(3, 4), x.getShape());
      assertArrayEquals(first, m.apply(x).toFloatArray(), 0f);
    }
  }

  /** Two threads on one matrix at once (a shared model in an encode job) get what one thread gets. */
  @Test
  void concurrentCallsOnOneMatrix() throws Exception {
    int n = 256;
    int k = 512;
    try (NDManager nd = NDManager.newBaseManager(); Bf16Matrix m = Bf16Matrix.of(random(n * k), n, k)) {
      NDArray[] x = {nd.create(random(300 * k), new Shape(300, k)), nd.create(random(300 * k), new Shape(300, k))};
      float[][] alone = {m.apply(x[0]).toFloatArray(), m.apply(x[1]).toFloatArray()};
      java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
      try {
        for (int round = 0; round < 20; round++) {
          java.util.List<java.util.concurrent.Future<float[]>> got = new java.util.ArrayList<>();
          for (int t = 0; t < 2; t++) {
            NDArray in = x[t];
            got.add(pool.submit(() -> {
              try (NDManager local = nd.newSubManager()) {
                NDArray y = m.apply(in);
                y.attach(local);
                return y.toFloatArray();
              }
            }));
          }
          for (int t = 0; t < 2; t++) {
            assertArrayEquals(alone[t], got.get(t).get(), 0f, "round " + round + " thread " + t);
          }
        }
      } finally {
        pool.shutdown();
      }
    }
  }

  @Test
  void refusesWrongShapes() {
    try (NDManager nd = NDManager.newBaseManager(); Bf16Matrix m = Bf16Matrix.of(random(8 * 4), 8, 4)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.apply(nd.ones(new Shape(2, 5))));
      assertTrue(e.getMessage().contains("[8, 4]"), e.getMessage());
    }
  }

  @Test
  void parsesComputeDTypes() {
    assertEquals(ComputeDType.BFLOAT16, ComputeDType.parse("bfloat16"));
    assertEquals(ComputeDType.FLOAT32, ComputeDType.parse("float32"));
    InputException e = assertThrows(InputException.class, () -> ComputeDType.parse("bf16"));
    assertTrue(e.getMessage().contains("--compute-dtype"), e.getMessage());
  }

  private static float[] random(int n) {
    float[] a = new float[n];
    for (int i = 0; i < n; i++) {
      a[i] = (float) (RANDOM.nextDouble() * 2 - 1);
    }
    return a;
  }

  /** Round to nearest even bfloat16, widened back. */
  private static float[] round(float[] a) {
    float[] r = new float[a.length];
    for (int i = 0; i < a.length; i++) {
      int u = Float.floatToRawIntBits(a[i]);
      u += 0x7fff + ((u >>> 16) & 1);
      r[i] = Float.intBitsToFloat(u & 0xffff0000);
    }
    return r;
  }

  private static float[] reference(float[] x, float[] w, int rows, int n, int k) {
    float[] y = new float[rows * n];
    for (int i = 0; i < rows; i++) {
      for (int j = 0; j < n; j++) {
        double s = 0;
        for (int t = 0; t < k; t++) {
          s += (double) x[i * k + t] * w[j * k + t];
        }
        y[i * n + j] = (float) s;
      }
    }
    return y;
  }
}
