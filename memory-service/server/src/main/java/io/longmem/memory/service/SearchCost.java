package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import java.util.List;

/**
 * What a planned search will hold at worst, known before any work: its answer (every query's k
 * choices, and per head up to queries x k distinct pairs, never more than the rows searched) and
 * what the search itself allocates on the way (each source's answer, FAISS's result arrays, the
 * refine pools, the merge). A search whose answer could not be sent is refused by it before it
 * starts, and the node charges {@link #heldBytes} to its budget of searches in flight.
 *
 * @param answerBytes the largest answer message the search can produce
 * @param heldBytes everything the search may hold at once, the answer included
 */
record SearchCost(long answerBytes, long heldBytes) {
  /** a pair's bookkeeping in a {@link Hits.Head}: source, row, document, position */
  private static final long PAIR_REFS = 4 + 8 + 4 + 4;
  /** a FAISS result: a score and an id */
  private static final long RESULT = 4 + 8;
  /** a refine candidate: shard, row, rank, address, exact score */
  private static final long CANDIDATE = 4 + 8 + 8 + 8 + 4;

  /**
   * @param local this node's shard tasks
   * @param approximate whether they are searched with a refine pool (else one answer per shard)
   * @param remoteParts how many other nodes' answers are decoded here
   * @param remoteRows the rows of the shards they search
   * @param float16 the answer carries float16 keys and values
   */
  static SearchCost of(SearchQuery q, List<LocalShards.Task> local, boolean approximate, int refine,
      int remoteParts, long remoteRows, List<Session> sessions, boolean float16) {
    long localRows = 0;
    for (LocalShards.Task t : local) {
      localRows += rows(t);
    }
    long sessionRows = 0;
    for (Session s : sessions) {
      sessionRows += s.tokens(q.layer());
    }
    long choices = mul(q.queries(), q.k());
    long answer = answer(q, Math.min(choices, localRows + remoteRows + sessionRows), float16 ? 2 : 4);
    long held = answer;
    // each source's own answer (float32 pairs for remote ones, decoded here), then their merge
    int shards = local.size();
    int sources = (approximate ? Math.min(1, shards) : shards) + sessions.size() + remoteParts;
    held = add(held, mul(sources + 1, hitsBytes(q, Math.min(choices, localRows + remoteRows + sessionRows))));
    held = add(held, mul(remoteParts, answer(q, Math.min(choices, remoteRows), 4)));
    // FAISS's results: every shard task at once (exact), or every head's proposals and pool (refine)
    if (approximate && shards > 0) {
      long pool = Math.min(mul(q.k(), refine), FaissIndex.MAX_K);
      long perShard = LocalShards.proposals(q.k(), (int) pool, shards);
      long perHead = add(mul(shards, q.queries(), perShard, RESULT), mul(pool, CANDIDATE));
      held = add(held, mul(q.heads(), perHead));
    } else {
      held = add(held, mul(shards + sessions.size(), choices, RESULT));
    }
    return new SearchCost(answer, held);
  }

  /** The answer message: per head its pairs' keys, values, documents and positions, and the choices. */
  private static long answer(SearchQuery q, long pairsPerHead, int bytesPerValue) {
    long perPair = 2L * q.headDim() * bytesPerValue + 8;
    return mul(q.heads(), add(mul(pairsPerHead, perPair), mul(q.queries(), q.k(), 8)));
  }

  /** One {@link Hits}: per head its scores and slots, and its pairs' references. */
  private static long hitsBytes(SearchQuery q, long pairsPerHead) {
    return mul(q.heads(), add(mul(q.queries(), q.k(), 8), mul(pairsPerHead, PAIR_REFS)));
  }

  private static long rows(LocalShards.Task t) {
    if (t.ranges() == null) {
      return t.shard().rows();
    }
    long n = 0;
    for (int i = 0; i + 1 < t.ranges().length; i += 2) {
      n += t.ranges()[i + 1] - t.ranges()[i];
    }
    return n;
  }

  /** Saturating products and sums: a worst case past 2^63 is simply too large. */
  static long mul(long... factors) {
    long p = 1;
    for (long f : factors) {
      try {
        p = Math.multiplyExact(p, f);
      } catch (ArithmeticException e) {
        return Long.MAX_VALUE;
      }
    }
    return p;
  }

  static long add(long a, long b) {
    long s = a + b;
    return ((a ^ s) & (b ^ s)) < 0 ? Long.MAX_VALUE : s;
  }
}
