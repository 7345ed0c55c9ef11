package io.longmem.memory.service;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * One part of what a search covers: this node's shards of the query's collections, a session, the
 * shards another node holds. {@link MemoryNode} plans a search into sources, asks them all at once
 * and merges their answers, so a search costs its slowest part, not the sum of its parts.
 */
interface MemorySource {
  /**
   * The top-k of the query over what this source holds, per head and query, best first: exact, or
   * (an approximate index) the exact scores of a re-scored candidate pool. The work runs on
   * {@code pool} (or on another node); the future fails with a {@link RequestException} for a fault
   * of the request, a {@link MissingShardsException} when no replica of some shards answered.
   * Checks that need no search (layers, shapes) are done when the search is planned.
   */
  CompletableFuture<Hits> search(SearchQuery q, Executor pool);
}
