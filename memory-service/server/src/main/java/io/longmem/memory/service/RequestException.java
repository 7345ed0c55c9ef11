package io.longmem.memory.service;

/**
 * A request the memory node cannot answer, with the gRPC status it maps to. The message names
 * the field or thing at fault.
 */
public final class RequestException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The gRPC status codes this node answers with. */
  public enum Kind {
    INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE, FAILED_PRECONDITION,
    /** the caller cancelled the call: its work was stopped */
    CANCELLED,
    /** the call's deadline passed: its work was stopped */
    DEADLINE_EXCEEDED
  }

  private final Kind kind;

  public RequestException(Kind kind, String message) {
    super(message);
    this.kind = kind;
  }

  public Kind kind() {
    return kind;
  }

  static RequestException invalid(String message) {
    return new RequestException(Kind.INVALID_ARGUMENT, message);
  }

  static RequestException notFound(String message) {
    return new RequestException(Kind.NOT_FOUND, message);
  }
}
