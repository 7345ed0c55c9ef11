package io.longmem.memory.api;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The project's float16 codec against Arrow's, an independent implementation (here, where Arrow is linked). */
class Float16Test {
  @Test
  void everyHalfRoundTrips() {
    for (int bits = 0; bits < 1 << 16; bits++) {
      float f = Float16.toFloat((short) bits);
      if (Float.isNaN(f)) {
        assertEquals(true, Float.isNaN(Float16.toFloat(Float16.toHalf(f))), "NaN " + bits);
        continue;
      }
      assertEquals((short) bits, Float16.toHalf(f), "half " + Integer.toHexString(bits));
      assertEquals(org.apache.arrow.memory.util.Float16.toFloat((short) bits), f, 0f, "half " + bits);
    }
  }

  @Test
  void floatsRoundToNearestEvenAsArrowRounds() {
    SplittableRandom r = new SplittableRandom(7);
    for (int i = 0; i < 2_000_000; i++) {
      // every exponent a half can reach and beyond, with random mantissas (midpoints included)
      int exp = 127 - 30 + r.nextInt(50);
      int mant = r.nextInt(1 << 23);
      if (i % 4 == 0) {
        mant = (mant & ~0x1fff) | 0x1000; // an exact midpoint between two halves
      }
      float f = Float.intBitsToFloat((r.nextBoolean() ? 0x80000000 : 0) | (exp << 23) | mant);
      assertEquals(org.apache.arrow.memory.util.Float16.toFloat16(f), Float16.toHalf(f), "float " + f);
    }
    for (float f : new float[] {0f, -0f, 65504f, 65520f, 1e9f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY,
        Float.MIN_VALUE, 5.96e-8f, 2.98e-8f, 2.99e-8f}) {
      assertEquals(org.apache.arrow.memory.util.Float16.toFloat16(f), Float16.toHalf(f), "float " + f);
    }
  }
}
