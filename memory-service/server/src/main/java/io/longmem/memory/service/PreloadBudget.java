package io.longmem.memory.service;

import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardLayout;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What of each collection a node reads into memory at load, within its preload limit
 * (preload_limit_mb): collections in the configured order take keys, values and positions while
 * they fit, else their keys alone (re-scoring reads keys at random; a page fault costs more than
 * the read), else nothing. A page read at load costs no fault when a search needs it.
 */
final class PreloadBudget {
  private static final Logger LOG = LoggerFactory.getLogger(PreloadBudget.class);
  private final boolean enabled;
  private final long limit;
  private long used;

  PreloadBudget(boolean enabled, long limitBytes) {
    this.enabled = enabled;
    this.limit = limitBytes;
  }

  /** What to preload of a collection (the shards of {@code mine}, null: all), counted against the limit. */
  MemoryCollection.Preload take(String name, Manifest m, Set<String> mine) {
    if (!enabled) {
      return MemoryCollection.Preload.NONE;
    }
    long keys = storedBytes(m, mine);
    long all = 2 * keys + rows(m, mine) * 4; // values as large as keys; int32 positions
    if (used + all <= limit) {
      used += all;
      return MemoryCollection.Preload.ALL;
    }
    if (used + keys <= limit) {
      used += keys;
      LOG.warn("collection {}: only its keys ({} MiB) are read into memory at load: with its values they "
          + "would take this node past its preload limit ({} MiB, preload_limit_mb)", name, keys >> 20, limit >> 20);
      return MemoryCollection.Preload.KEYS;
    }
    LOG.warn("collection {}: its keys ({} MiB) would take this node past its preload limit "
        + "({} MiB, preload_limit_mb): they stay on disk until read", name, keys >> 20, limit >> 20);
    return MemoryCollection.Preload.NONE;
  }

  /** Bytes preloaded so far. */
  long used() {
    return used;
  }

  /** The rows of a collection this node loads (its shards, or those of {@code mine}), over every layer. */
  static long rows(Manifest m, Set<String> mine) {
    long rows = 0;
    for (Manifest.ShardEntry s : m.shards()) {
      if (mine == null || mine.contains(s.id())) {
        rows += s.rows();
      }
    }
    return rows * m.layout().layers().size();
  }

  /** The bytes of the keys of those rows (values take as many). */
  static long storedBytes(Manifest m, Set<String> mine) {
    ShardLayout l = m.layout();
    return rows(m, mine) * l.width() * l.storage().bytes();
  }
}
