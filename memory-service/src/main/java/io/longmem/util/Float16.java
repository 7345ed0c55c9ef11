package io.longmem.util;

/** IEEE 754 half precision to float (Java 17 has no Float.float16ToFloat). */
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
