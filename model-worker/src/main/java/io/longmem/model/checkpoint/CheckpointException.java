package io.longmem.model.checkpoint;

import io.longmem.io.InputException;

/** A checkpoint that cannot be loaded as published: the message names the file or tensor. */
public class CheckpointException extends InputException {
  private static final long serialVersionUID = 1L;

  public CheckpointException(String message) {
    super(message);
  }

  public CheckpointException(String message, Throwable cause) {
    super(message, cause);
  }
}
