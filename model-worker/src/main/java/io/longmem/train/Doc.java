package io.longmem.train;

/**
 * One training document: its tokens and, per token, whether predicting it counts in the loss
 * (all of a text; only the answer of a synthetic task).
 */
public record Doc(int[] tokens, boolean[] loss) {
  public Doc {
    if (tokens.length != loss.length) {
      throw new IllegalArgumentException("tokens and loss flags differ in length");
    }
  }

  /** A text whose every token is a target. */
  public static Doc text(int[] tokens) {
    boolean[] all = new boolean[tokens.length];
    java.util.Arrays.fill(all, true);
    return new Doc(tokens, all);
  }
}
