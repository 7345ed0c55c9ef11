package io.longmem.memory.api;

/** A message's array field holds bytes that are not a whole number of its elements. */
public final class WireFormatException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public WireFormatException(String message) {
    super(message);
  }
}
