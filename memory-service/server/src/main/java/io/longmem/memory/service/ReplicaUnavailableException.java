package io.longmem.memory.service;

/**
 * One replica could not answer for some shards (down, timed out, failed, or answered something
 * that does not decode): another replica of them may. Never reaches a client; when no replica is
 * left the shards become a {@link MissingShardsException}.
 */
final class ReplicaUnavailableException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  ReplicaUnavailableException(String node, String why, Throwable cause) {
    super("node " + node + ": " + why, cause);
  }
}
