package io.longmem.memory.faiss;

/**
 * A native read of a memory-mapped file faulted (SIGBUS): the file was truncated or became
 * unreadable under the reader. Thrown by {@link MappedReads} instead of letting the fault kill
 * the JVM; the reader's owner decides what the file is worth now.
 */
public final class MappedReadException extends IllegalStateException {
  private static final long serialVersionUID = 1L;

  public MappedReadException(String message) {
    super(message);
  }
}
