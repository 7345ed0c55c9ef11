package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.model.checkpoint.MemDType;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The on-device bfloat16 rounding agrees bit for bit with round-to-nearest-even on the bits. */
class MemRoundingTest {

  @Test
  void bfloat16MatchesBitRounding() {
    SplittableRandom r = new SplittableRandom(7);
    int n = 1 << 20;
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      switch (i % 4) {
        case 0: x[i] = (float) r.nextGaussian(); break;
        case 1: x[i] = Float.intBitsToFloat(r.nextInt()); break; // any bit pattern
        case 2: x[i] = Float.intBitsToFloat((r.nextInt() & 0xffff0000) | 0x8000); break; // exact ties
        default: x[i] = (float) Math.scalb(1.0, r.nextInt(-140, 127)) * (r.nextBoolean() ? 1 : -1)
            * (1 - (float) Math.scalb(1.0, -r.nextInt(1, 30))); // just below powers of two
      }
    }
    x[0] = 0f;
    x[1] = -0f;
    x[2] = Float.MAX_VALUE;
    x[3] = Float.MIN_VALUE;
    try (NDManager m = NDManager.newBaseManager(); NDArray a = m.create(x)) {
      // the native pass where its library loads (as the model rounds), and the float32-ops one
      check(x, MemRounding.round(a, MemDType.BFLOAT16).toFloatArray());
      check(x, MemRounding.roundBFloat16(a).toFloatArray());
    }
  }

  private static void check(float[] x, float[] got) {
    for (int i = 0; i < x.length; i++) {
      float want = MemDType.roundToBFloat16(x[i]);
      if (Float.isNaN(want)) {
        assertEquals(Float.isNaN(want), Float.isNaN(got[i]), "NaN at " + i);
        continue;
      }
      assertEquals(want, got[i], 0f, "x=" + x[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(x[i])) + ")");
    }
  }
}
