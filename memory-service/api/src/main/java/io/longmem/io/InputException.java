package io.longmem.io;

/**
 * Input that is wrong (an option, a file, a checkpoint, a corpus, a request): the message names
 * the problem, and the command line prints it as one line. Only this type (and its subclasses)
 * is a user's error; any other exception is a bug and keeps its stack trace.
 */
public class InputException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  public InputException(String message) {
    super(message);
  }

  public InputException(String message, Throwable cause) {
    super(message, cause);
  }
}
