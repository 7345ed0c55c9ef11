package io.longmem.model.compute;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

/**
 * The attention of prefill-sized inputs in bfloat16 on oneDNN, as the reference computes it under
 * {@code model.to(torch.bfloat16)}: q.k^T and weights.v with both operands rounded to bfloat16,
 * float32 accumulate and output. {@link #attend} is the whole masked softmax attention in one
 * native pass; {@link #matMul} one of its two matmuls, for the per-query (kNN) memory path, whose
 * masking and softmax stay in DJL. A decode step's attention stays float32 (its shapes change every
 * token, and its matmuls are small).
 */
public final class Bf16Attention {
  private static volatile Boolean supported;

  private Bf16Attention() {}

  /**
   * Whether bfloat16 compute runs the attention's matmuls in bfloat16: where oneDNN multiplies
   * bfloat16 here, unless the system property {@code longmem.bf16.attention=false} keeps them in
   * float32 (to measure what they bring).
   */
  public static boolean enabled() {
    return !"false".equals(System.getProperty("longmem.bf16.attention")) && available();
  }

  /** Whether oneDNN multiplies bfloat16 here (AVX512 and up); loads the library. */
  public static boolean available() {
    Boolean s = supported;
    if (s == null) {
      Bf16Native.ensureLoaded();
      s = Bf16Native.bmmSupported();
      supported = s;
    }
    return s;
  }

  /**
   * Masked softmax attention in one native pass: bf16(q) . bf16(k)^T / scale + mask, floored at
   * {@code floor}, softmax in float32, times bf16(v). The score matrix is never materialized (a
   * block of 32 queries at a time), so neither are its float32 copies (masking, flooring, softmax,
   * the memory's concatenation) that prefill otherwise spends most of its non-matmul time on.
   *
   * @param q [B, H, L, D]
   * @param k keys [B, H, N, D] (local and memory keys concatenated)
   * @param v values [B, H, N, D]
   * @param mask additive, [B, 1 or H, 1 or L, N]
   * @return [B, H, L, D] float32 on q's manager
   */
  public static NDArray attend(NDArray q, NDArray k, NDArray v, NDArray mask, float scale, float floor) {
    Shape sq = q.getShape();
    Shape sk = k.getShape();
    Shape sm = mask.getShape();
    if (sq.dimension() != 4 || !sk.equals(v.getShape()) || sk.dimension() != 4 || sm.dimension() != 4
        || sk.get(0) != sq.get(0) || sk.get(1) != sq.get(1) || sk.get(3) != sq.get(3) || sm.get(0) != sq.get(0)
        || (sm.get(1) != 1 && sm.get(1) != sq.get(1)) || (sm.get(2) != 1 && sm.get(2) != sq.get(2))
        || sm.get(3) != sk.get(2)) {
      throw new IllegalArgumentException("bfloat16 attention of q " + sq + ", k " + sk + ", v " + v.getShape()
          + ", mask " + sm);
    }
    long t0 = System.nanoTime();
    NDArray out = q.getManager().create(sq, DataType.FLOAT32);
    Bf16Native.attend(Bf16Native.memory(q), Bf16Native.memory(k), Bf16Native.memory(v),
        Bf16Native.memory(mask), Bf16Native.memory(out), sq.get(0), sq.get(1), sq.get(2),
        sk.get(2), sq.get(3), sm.get(1), sm.get(2), scale, floor, Bf16Matrix.threads());
    Bf16Matrix.addApplyNanos(System.nanoTime() - t0);
    return out;
  }

  /**
   * a [..., m, k] @ b [..., k, n] (or b^T, b [..., n, k], when {@code transB}); the leading dims of
   * a and b are equal (no broadcasting). Returns float32 [..., m, n] on a's manager.
   */
  public static NDArray matMul(NDArray a, NDArray b, boolean transB) {
    Shape sa = a.getShape();
    Shape sb = b.getShape();
    int d = sa.dimension();
    if (d < 2 || sb.dimension() != d || a.getDataType() != DataType.FLOAT32 || b.getDataType() != DataType.FLOAT32) {
      throw new IllegalArgumentException("bfloat16 batched matmul of " + sa + " by " + sb);
    }
    long m = sa.get(d - 2);
    long k = sa.get(d - 1);
    long n = transB ? sb.get(d - 2) : sb.get(d - 1);
    long kb = transB ? sb.get(d - 1) : sb.get(d - 2);
    long batch = 1;
    for (int i = 0; i < d - 2; i++) {
      if (sa.get(i) != sb.get(i)) {
        throw new IllegalArgumentException("bfloat16 batched matmul: leading dims differ, " + sa + " by " + sb);
      }
      batch *= sa.get(i);
    }
    if (kb != k) {
      throw new IllegalArgumentException("bfloat16 batched matmul: inner dims differ, " + sa + " by " + sb);
    }
    long[] dims = sa.getShape().clone();
    dims[d - 1] = n;
    long t0 = System.nanoTime();
    NDArray c = a.getManager().create(new Shape(dims), DataType.FLOAT32);
    if (batch * m * n > 0 && k > 0) {
      Bf16Native.bmm(Bf16Native.memory(a), Bf16Native.memory(b), Bf16Native.memory(c), batch, m, n, k, transB,
          Bf16Matrix.threads());
    } else {
      c.close();
      c = a.getManager().zeros(new Shape(dims));
    }
    Bf16Matrix.addApplyNanos(System.nanoTime() - t0);
    return c;
  }
}
