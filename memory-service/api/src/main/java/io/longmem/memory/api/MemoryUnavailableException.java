package io.longmem.memory.api;

/**
 * The memory service could not be reached (or kept failing) within the deadlines and retries: the
 * request fails rather than go on without its memory.
 */
public final class MemoryUnavailableException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public MemoryUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
