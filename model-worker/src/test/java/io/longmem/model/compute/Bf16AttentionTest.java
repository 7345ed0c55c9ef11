package io.longmem.model.compute;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The attention's batched bfloat16 matmul against DJL's float32 matmul of the bfloat16-rounded
 * operands (equal up to float32 summation order) and of the unrounded ones (apart by bfloat16
 * rounding), with b as stored and read transposed, on a strided (sliced) operand too. Skipped
 * where oneDNN has no bfloat16 matmul (Maven's run capped at AVX2).
 */
class Bf16AttentionTest {
  private static final SplittableRandom RANDOM = new SplittableRandom(7);

  @Test
  void batchedMatmulIsFloat32OnRoundedOperands() {
    assumeTrue(Bf16Attention.available(), "no oneDNN bfloat16 matmul on this CPU (isa " + Bf16Matrix.isa() + ")");
    long batch = 2;
    long heads = 3;
    long m = 37;
    long k = 20;
    long n = 45;
    try (NDManager nd = NDManager.newBaseManager()) {
      NDArray a = nd.create(random(batch * heads * m * k), new Shape(batch, heads, m, k));
      NDArray bt = nd.create(random(batch * heads * n * k), new Shape(batch, heads, n, k));
      NDArray b = bt.swapAxes(2, 3).duplicate(); // [.., k, n]
      NDArray want = round(a).matMul(round(bt).swapAxes(2, 3));
      NDArray f32 = a.matMul(bt.swapAxes(2, 3));
      for (boolean transB : new boolean[] {false, true}) {
        NDArray got = Bf16Attention.matMul(a, transB ? bt : b, transB);
        assertEquals(new Shape(batch, heads, m, n), got.getShape());
        double exact = got.sub(want).abs().max().getFloat();
        double rounding = got.sub(f32).abs().max().getFloat();
        assertTrue(exact < 1e-5, "transB " + transB + ": " + exact + " from float32 on the rounded operands");
        assertTrue(rounding > 1e-4, "transB " + transB + ": " + rounding + " from float32: not rounded to bfloat16");
      }
      // a strided operand: a slice of queries (DJL hands over a contiguous copy)
      NDArray part = a.get(":, :, 5:30, :");
      NDArray got = Bf16Attention.matMul(part, bt, true);
      double exact = got.sub(want.get(":, :, 5:30, :")).abs().max().getFloat();
      assertTrue(exact < 1e-5, exact + " from float32 on the rounded operands (sliced queries)");
    }
  }

  private static float[] random(long n) {
    float[] a = new float[Math.toIntExact(n)];
    for (int i = 0; i < a.length; i++) {
      a[i] = (float) (RANDOM.nextDouble() * 2 - 1);
    }
    return a;
  }

  /** Rounded to nearest even bfloat16 and widened back, in Java. */
  private static NDArray round(NDArray x) {
    float[] v = x.toFloatArray();
    for (int i = 0; i < v.length; i++) {
      int u = Float.floatToRawIntBits(v[i]);
      u += 0x7fff + ((u >>> 16) & 1);
      v[i] = Float.intBitsToFloat(u & 0xffff0000);
    }
    return x.getManager().create(v, x.getShape());
  }
}
