package io.longmem.memory.api;

/**
 * IEEE 754 half precision, both ways: the project's one float16 codec (Java 17 has no
 * Float.float16ToFloat / floatToFloat16).
 */
public final class Float16 {
  /** Every half value as a float: conversion is one lookup. */
  private static final float[] TABLE = new float[1 << 16];

  static {
    for (int i = 0; i < TABLE.length; i++) {
      TABLE[i] = convert(i);
    }
  }

  private Float16() {}

  public static float toFloat(short h) {
    return TABLE[h & 0xffff];
  }

  /** The nearest half (ties to even), as torch's {@code .to(torch.float16)} and Arrow round. */
  public static short toHalf(float f) {
    int bits = Float.floatToRawIntBits(f);
    int sign = (bits >>> 16) & 0x8000;
    int exp = (bits >>> 23) & 0xff;
    int mant = bits & 0x7fffff;
    if (exp == 0xff) { // inf, NaN (kept quiet)
      return (short) (sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >>> 13) : 0));
    }
    int e = exp - 127 + 15;
    if (e >= 0x1f) { // too large: inf
      return (short) (sign | 0x7c00);
    }
    if (e <= 0) { // subnormal half (or zero)
      if (e < -10) {
        return (short) sign;
      }
      int m = mant | 0x800000;
      int shift = 14 - e;
      int half = m >>> shift;
      int rest = m & ((1 << shift) - 1);
      int mid = 1 << (shift - 1);
      if (rest > mid || (rest == mid && (half & 1) != 0)) {
        half++;
      }
      return (short) (sign | half);
    }
    int half = (e << 10) | (mant >>> 13);
    int rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1) != 0)) {
      half++; // may carry into the exponent, up to inf: still right
    }
    return (short) (sign | half);
  }

  private static float convert(int bits) {
    int sign = (bits & 0x8000) << 16;
    int exp = (bits >>> 10) & 0x1f;
    int mant = bits & 0x3ff;
    if (exp == 0x1f) {
      return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
    }
    if (exp == 0) {
      float v = mant * 0x1p-24f;
      return sign != 0 ? -v : v;
    }
    return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  }
}
