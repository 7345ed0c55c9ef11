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
 * The fused bfloat16 attention against DJL's float32 masked softmax of the rounded operands
 * (blocks of queries, causal and broadcast masks, fully masked rows). The attention's batched
 * bfloat16 matmul against DJL's float32 matmul of the bfloat16-rounded
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

  @Test
  void fusedAttentionIsTheMaskedSoftmaxOfRoundedOperands() {
    assumeTrue(Bf16Attention.available(), "no oneDNN bfloat16 matmul on this CPU (isa " + Bf16Matrix.isa() + ")");
    long batch = 2;
    long heads = 3;
    long len = 37; // a block of 32 queries and a shorter last one
    long n = 53;
    long d = 16;
    float scale = 4f;
    try (NDManager nd = NDManager.newBaseManager()) {
      NDArray q = nd.create(random(batch * heads * len * d), new Shape(batch, heads, len, d)).mul(3);
      NDArray k = nd.create(random(batch * heads * n * d), new Shape(batch, heads, n, d));
      NDArray v = nd.create(random(batch * heads * n * d), new Shape(batch, heads, n, d));
      // causal over the last len keys, the first n - len always visible; batch row 1 drops key 2
      float[] m = new float[Math.toIntExact(batch * len * n)];
      for (int b = 0; b < batch; b++) {
        for (int i = 0; i < len; i++) {
          for (int j = 0; j < n; j++) {
            boolean hidden = j > n - len + i || (b == 1 && j == 2);
            m[Math.toIntExact((b * len + i) * n + j)] = hidden ? -1e9f : 0f;
          }
        }
      }
      NDArray mask = nd.create(m, new Shape(batch, 1, len, n));
      NDArray scores = round(q).matMul(round(k).swapAxes(2, 3)).div(scale).add(mask).maximum(-1e6f);
      NDArray want = round(scores.softmax(-1)).matMul(round(v));
      NDArray got = Bf16Attention.attend(q, k, v, mask, scale, -1e6f);
      assertEquals(new Shape(batch, heads, len, d), got.getShape());
      double apart = got.sub(want).abs().max().getFloat();
      assertTrue(apart < 2e-3, apart + " from the masked softmax of the rounded operands");
      // a hidden key's value does not reach the output; a visible one's does
      float[] changed = v.toFloatArray();
      long hiddenKey = n - 1; // hidden from every query but the last
      for (int c = 0; c < d; c++) {
        changed[Math.toIntExact(hiddenKey * d + c)] += 5f; // batch 0, head 0
      }
      NDArray out2 = Bf16Attention.attend(q, k, nd.create(changed, v.getShape()), mask, scale, -1e6f);
      NDArray diff = out2.sub(got).abs().get("0, 0").max(new int[] {1});
      for (int i = 0; i < len - 1; i++) {
        assertEquals(0f, diff.getFloat(i), 0f, "query " + i + " saw a key after it");
      }
      assertTrue(diff.getFloat(len - 1) > 1e-3, "the last query did not see the last key");
      // one mask row for all queries (the memory's shape) broadcasts
      NDArray row = nd.create(random(batch * n), new Shape(batch, 1, 1, n));
      NDArray wantRow = round(round(q).matMul(round(k).swapAxes(2, 3)).div(scale).add(row).softmax(-1))
          .matMul(round(v));
      double rowApart = Bf16Attention.attend(q, k, v, row, scale, -1e6f).sub(wantRow).abs().max().getFloat();
      assertTrue(rowApart < 2e-3, rowApart + " from the softmax with a broadcast mask row");
      // a query whose keys are all masked averages them, as the floored softmax does
      NDArray none = nd.full(new Shape(batch, 1, len, n), -1e9f);
      NDArray mean = Bf16Attention.attend(q, k, v, none, scale, -1e6f);
      double fromMean = mean.sub(round(v).mean(new int[] {2}, true)).abs().max().getFloat();
      assertTrue(fromMean < 1e-3, fromMean + " from the mean value under a full mask");
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
