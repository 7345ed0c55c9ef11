package io.longmem.memory.service;

import java.util.List;

/**
 * No replica of these shards ("collection/shard") answered. The node refuses the whole search
 * (UNAVAILABLE, naming them) rather than answer from part of the memory.
 */
final class MissingShardsException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final List<String> shards;

  MissingShardsException(List<String> shards) {
    super("no live replica for shards " + shards);
    this.shards = List.copyOf(shards);
  }

  List<String> shards() {
    return shards;
  }
}
