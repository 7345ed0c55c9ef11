package io.longmem.memory.api;

import io.longmem.io.InputException;

/**
 * The memory service refused what was asked (an unknown collection or document, shapes that do
 * not match, memory of another model): the caller's request is at fault, and retrying will not help.
 */
public final class MemoryRequestException extends InputException {
  private static final long serialVersionUID = 1L;

  public MemoryRequestException(String message) {
    super(message);
  }
}
