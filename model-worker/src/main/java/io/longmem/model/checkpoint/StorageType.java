package io.longmem.model.checkpoint;

/** Element types a checkpoint may store; weights must be one of F32, F16, BF16. */
public enum StorageType {
  F32(4), F16(2), BF16(2), F64(8), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1);

  private final int bytes;

  StorageType(int bytes) {
    this.bytes = bytes;
  }

  public int bytes() {
    return bytes;
  }

  public boolean isWeightType() {
    return this == F32 || this == F16 || this == BF16;
  }

  /** Safetensors dtype names. */
  static StorageType fromSafetensors(String s) {
    switch (s) {
      case "F32": return F32;
      case "F16": return F16;
      case "BF16": return BF16;
      case "F64": return F64;
      case "I64": return I64;
      case "I32": return I32;
      case "I16": return I16;
      case "I8": return I8;
      case "U8": return U8;
      case "BOOL": return BOOL;
      default: return null;
    }
  }

  /** torch legacy storage class names, as pickled by {@code torch.save}. */
  static StorageType fromTorchStorage(String name) {
    switch (name) {
      case "FloatStorage": return F32;
      case "HalfStorage": return F16;
      case "BFloat16Storage": return BF16;
      case "DoubleStorage": return F64;
      case "LongStorage": return I64;
      case "IntStorage": return I32;
      case "ShortStorage": return I16;
      case "CharStorage": return I8;
      case "ByteStorage": return U8;
      case "BoolStorage": return BOOL;
      default: return null;
    }
  }
}
