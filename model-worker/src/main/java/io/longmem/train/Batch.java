package io.longmem.train;

/**
 * A training batch: ids [B][L], and the positions (flat, b * L + t) whose next token counts in
 * the loss with that token as target; per entry whether it holds a private document's tokens
 * (null: none), which only the entries of its own document may see.
 */
public record Batch(long[][] ids, int[] positions, long[] targets, boolean[] privateEntries) {
  public Batch(long[][] ids, int[] positions, long[] targets) {
    this(ids, positions, targets, null);
  }

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
