package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.longmem.model.compute.Bf16Rounding;
import org.junit.jupiter.api.Test;

/**
 * The native rotary pass (bfloat16 compute) against the DJL ops it replaces: the same float32
 * products and sum, so equal bit for bit, at positions per batch row, on a strided (sliced) input;
 * a position outside the table is refused.
 */
class RopeTest {
  @Test
  void nativePassEqualsTheDjlOps() {
    assumeTrue(Bf16Rounding.available(), "the native library does not load here");
    long batch = 2;
    long heads = 3;
    long len = 7;
    int dim = 8;
    try (NDManager m = NDManager.newBaseManager()) {
      Rope djl = new Rope(m, dim, 10000.0, 64);
      Rope fused = new Rope(m, dim, 10000.0, 64, true);
      NDArray x = m.randomNormal(new Shape(batch, heads, len + 2, dim)).get(":, :, 2:, :"); // a view
      long[] p = new long[(int) (batch * len)];
      for (int i = 0; i < p.length; i++) {
        p[i] = (i % len) * 5 + (i / len) * 3; // rows at different offsets
      }
      NDArray pos = m.create(p, new Shape(batch, len));
      float[] want = djl.rotate(x, pos, 40).toFloatArray();
      float[] got = fused.rotate(x, pos, 40).toFloatArray();
      for (int i = 0; i < want.length; i++) {
        assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]), "element " + i);
      }
      NDArray far = m.create(new long[] {0, 1, 2, 3, 4, 5, 1000, 0, 0, 0, 0, 0, 0, 0}, new Shape(batch, len))
          .toType(DataType.INT64, false);
      assertThrows(IllegalArgumentException.class,
          () -> io.longmem.model.compute.NativeRope.rotate(x, far, m.zeros(new Shape(64, dim)), m.zeros(new Shape(64, dim))));
    }
  }
}
