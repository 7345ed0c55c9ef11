package io.longmem.train;

/**
 * A training batch: ids [B][L], and the positions (flat, b * L + t) whose next token counts in
 * the loss with that token as target.
 */
public record Batch(long[][] ids, int[] positions, long[] targets) {
  public int size() {
    return ids.length;
  }

  public int length() {
    return ids[0].length;
  }

  public long tokens() {
    return (long) ids.length * ids[0].length;
  }
}
