package io.longmem.train;

import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.passkey.Passkey;
import java.util.Arrays;
import java.util.Collections;
import java.util.Random;

/**
 * The paper's passkey prompt as a training document: task line, the filler, "The pass key is N.
 * Remember it. N is the pass key." at a random depth, more filler, the question, and the answer
 * " N", whose tokens alone count in the loss. Exactly the asked number of tokens: filler tokens
 * after BOS make up what whole filler sentences do not fill.
 */
public final class PasskeyTask {
  private final SentencePieceTokenizer tok;
  private final int tokens;
  private final Random random;
  private final int[] filler;

  public PasskeyTask(SentencePieceTokenizer tok, int tokens, long seed) {
    this.tok = tok;
    this.tokens = tokens;
    this.random = new Random(seed);
    this.filler = tok.encode(Passkey.FILLER + " ");
    if (tokens < 64) {
      throw new io.longmem.io.InputException("a passkey document needs at least 64 tokens, got " + tokens
          + " (raise --length or --k)");
    }
  }

  /** The key of the last document made. */
  private int lastKey;

  public int lastKey() {
    return lastKey;
  }

  /** A new document with a random key (1..50000) at a random depth. */
  public Doc next() {
    int key = 1 + random.nextInt(50_000);
    lastKey = key;
    int perFiller = tok.encode(" " + Passkey.FILLER).length;
    int fixed = tok.encodeWithBos(String.join("\n", Passkey.TASK, Passkey.keyLine(key), Passkey.QUESTION + " " + key))
        .length + 4;
    int repeats = Math.max(0, (tokens - fixed) / perFiller);
    while (true) {
      int before = random.nextInt(repeats + 1);
      String prompt = String.join("\n", Passkey.TASK, String.join(" ", Collections.nCopies(before, Passkey.FILLER)),
          Passkey.keyLine(key), String.join(" ", Collections.nCopies(repeats - before, Passkey.FILLER)),
          Passkey.QUESTION);
      int[] question = tok.encodeWithBos(prompt);
      int[] full = tok.encodeWithBos(prompt + " " + key);
      int common = 0;
      while (common < question.length && common < full.length && question[common] == full[common]) {
        common++;
      }
      if (full.length > tokens) {
        repeats--;
        continue;
      }
      int pad = tokens - full.length;
      int[] t = new int[tokens];
      boolean[] loss = new boolean[tokens];
      t[0] = full[0]; // BOS
      for (int i = 0; i < pad; i++) {
        t[1 + i] = filler[i % filler.length];
      }
      System.arraycopy(full, 1, t, 1 + pad, full.length - 1);
      Arrays.fill(loss, pad + common, tokens, true);
      return new Doc(t, loss);
    }
  }
}
