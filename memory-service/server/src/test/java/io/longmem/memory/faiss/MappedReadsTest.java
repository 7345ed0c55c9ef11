package io.longmem.memory.faiss;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.longmem.memory.api.Float16;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The native reads (run on the AVX2 and on the generic library) against plain Java. */
class MappedReadsTest {
  /** Every finite float16 in every lane (8-wide SIMD and the scalar tail): a one-hot query reads it exactly. */
  @Test
  void everyFiniteFloat16IsReadExactly() {
    int dim = 9;
    int finite = 0;
    short[] patterns = new short[1 << 16];
    for (int bits = 0; bits < 1 << 16; bits++) {
      if (Float.isFinite(Float16.toFloat((short) bits))) {
        patterns[finite++] = (short) bits;
      }
    }
    ByteBuffer data = ByteBuffer.allocateDirect(finite * dim * 2).order(ByteOrder.LITTLE_ENDIAN);
    long[] at = new long[finite];
    for (int v = 0; v < finite; v++) {
      at[v] = MappedReads.address(data) + (long) v * dim * 2;
    }
    float[] out = new float[finite];
    for (int lane = 0; lane < dim; lane++) {
      for (int v = 0; v < finite; v++) {
        for (int d = 0; d < dim; d++) {
          data.putShort((v * dim + d) * 2, d == lane ? patterns[v] : (short) 0x3c00); // others: 1.0
        }
      }
      float[] q = new float[dim];
      q[lane] = 1f;
      MappedReads.innerProducts(q, 0, dim, at, finite, true, out);
      for (int v = 0; v < finite; v++) {
        float expected = Float16.toFloat(patterns[v]);
        assertEquals(expected == 0 ? 0f : expected, out[v] == 0 ? 0f : out[v], "half 0x"
            + Integer.toHexString(patterns[v] & 0xffff) + " in lane " + lane);
      }
    }
  }

  @Test
  void innerProductsMatchJava() {
    Random r = new Random(3);
    for (int dim : new int[] {1, 7, 8, 16, 100, 128}) {
      int n = 300;
      ByteBuffer halfs = ByteBuffer.allocateDirect(n * dim * 2).order(ByteOrder.LITTLE_ENDIAN);
      ByteBuffer floats = ByteBuffer.allocateDirect(n * dim * 4).order(ByteOrder.LITTLE_ENDIAN);
      float[] stored16 = new float[n * dim];
      float[] stored32 = new float[n * dim];
      for (int i = 0; i < n * dim; i++) {
        float x = (float) r.nextGaussian() * 3;
        short h = org.apache.arrow.memory.util.Float16.toFloat16(x);
        halfs.putShort(h);
        stored16[i] = Float16.toFloat(h);
        floats.putFloat(x);
        stored32[i] = x;
      }
      // scattered order, some vectors twice
      long[] at16 = new long[n];
      long[] at32 = new long[n];
      int[] which = new int[n];
      for (int j = 0; j < n; j++) {
        which[j] = r.nextInt(n);
        at16[j] = MappedReads.address(halfs) + (long) which[j] * dim * 2;
        at32[j] = MappedReads.address(floats) + (long) which[j] * dim * 4;
      }
      float[] q = new float[dim + 5];
      for (int i = 0; i < q.length; i++) {
        q[i] = (float) r.nextGaussian();
      }
      float[] got16 = new float[n];
      float[] got32 = new float[n];
      MappedReads.innerProducts(q, 5, dim, at16, n, true, got16);
      MappedReads.innerProducts(q, 5, dim, at32, n, false, got32);
      for (int j = 0; j < n; j++) {
        double e16 = 0;
        double e32 = 0;
        double scale = 0;
        for (int d = 0; d < dim; d++) {
          e16 += (double) q[5 + d] * stored16[which[j] * dim + d];
          e32 += (double) q[5 + d] * stored32[which[j] * dim + d];
          scale += Math.abs(q[5 + d] * stored32[which[j] * dim + d]);
        }
        assertEquals(e16, got16[j], 1e-5 * scale + 1e-6, "float16, dim " + dim + ", vector " + j);
        assertEquals(e32, got32[j], 1e-5 * scale + 1e-6, "float32, dim " + dim + ", vector " + j);
      }
    }
  }

  @Test
  void gatherCopiesThePiecesInOrder() {
    Random r = new Random(4);
    ByteBuffer data = ByteBuffer.allocateDirect(1 << 16);
    byte[] copy = new byte[1 << 16];
    r.nextBytes(copy);
    data.put(copy).flip();
    int bytes = 200;
    int n = 150;
    long[] at = new long[n];
    int[] from = new int[n];
    for (int j = 0; j < n; j++) {
      from[j] = r.nextInt(copy.length - bytes);
      at[j] = MappedReads.address(data) + from[j];
    }
    byte[] out = new byte[7 + n * bytes];
    MappedReads.gather(at, n, bytes, out, 7);
    byte[] expected = new byte[out.length];
    for (int j = 0; j < n; j++) {
      System.arraycopy(copy, from[j], expected, 7 + j * bytes, bytes);
    }
    assertArrayEquals(expected, out);
  }

  @Test
  void argumentsAreCheckedBeforeNativeCode() {
    long[] at = new long[4];
    float[] out = new float[4];
    assertThrows(IllegalArgumentException.class, () -> MappedReads.innerProducts(new float[8], 1, 8, at, 4, true, out));
    assertThrows(IllegalArgumentException.class, () -> MappedReads.innerProducts(new float[8], 0, 8, at, 5, true, out));
    assertThrows(IllegalArgumentException.class, () -> MappedReads.innerProducts(new float[8], 0, 8, at, 4, true,
        new float[3]));
    assertThrows(IllegalArgumentException.class, () -> MappedReads.gather(at, 4, 10, new byte[39], 0));
    assertThrows(IllegalArgumentException.class, () -> MappedReads.gather(at, 4, 10, new byte[40], 1));
    assertThrows(IllegalArgumentException.class, () -> MappedReads.address(ByteBuffer.allocate(8)));
  }
}
