package io.longmem.memory.shard;

import io.longmem.io.InputException;

/** A collection or shard that cannot be used as it is on disk; the message names the path. */
public class CollectionException extends InputException {
  private static final long serialVersionUID = 1L;

  public CollectionException(String message) {
    super(message);
  }
}
