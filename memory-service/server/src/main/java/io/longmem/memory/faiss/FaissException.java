package io.longmem.memory.faiss;

/** An error reported by FAISS itself (inputs are validated in Java before they get there). */
public class FaissException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public FaissException(String message) {
    super(message);
  }
}
