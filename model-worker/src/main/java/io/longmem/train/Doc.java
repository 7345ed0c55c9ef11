package io.longmem.train;

/**
 * One training document: its tokens and, per token, whether predicting it counts in the loss
 * (all of a text; only the answer of a synthetic task). A {@code private} document is nobody's
 * cross-batch negative: only its own later entries see its pairs (a passkey prompt in another
 * prompt's memory would be a second key there, a question with two answers).
 */
public record Doc(int[] tokens, boolean[] loss, boolean isPrivate) {
  public Doc {
    if (tokens.length != loss.length) {
      throw new IllegalArgumentException("tokens and loss flags differ in length");
    }
  }

  public Doc(int[] tokens, boolean[] loss) {
    this(tokens, loss, false);
  }

  /** The same tokens, no targets: a negative only. */
  public Doc withoutTargets() {
    return new Doc(tokens, new boolean[tokens.length], isPrivate);
  }

  /** A text whose every token is a target. */
  public static Doc text(int[] tokens) {
    boolean[] all = new boolean[tokens.length];
    java.util.Arrays.fill(all, true);
    return new Doc(tokens, all);
  }
}
