package io.longmem.train;

import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.passkey.Passkey;
import java.util.Arrays;
import java.util.Random;

/**
 * The paper's passkey prompt as a training document: task line, the filler, "The pass key is N.
 * Remember it. N is the pass key." at a random depth, more filler, the question, and the answer
 * " N.", whose tokens count in the loss (the full stop too: a model that has not seen where the answer
 * ends goes on copying digits after it). Exactly the asked number of tokens: filler tokens
 * after BOS make up what whole filler sentences do not fill.
 *
 * <p>{@code contextShare} adds that share of the other positions (drawn at random) to the loss:
 * predicting the repeated filler and the key's second mention is what grows the previous-token and
 * copying heads the answer's lookup is built from, and the answer alone gives too few targets per
 * step for a small model to find them in a short run.
 */
public final class PasskeyTask {
  private final SentencePieceTokenizer tok;
  private final int tokens;
  private final Random random;
  private final int[] filler;
  private final double contextShare;

  private final int maxTail;
  private final int keyBefore;
  private final double inMemoryShare;

  public PasskeyTask(SentencePieceTokenizer tok, int tokens, long seed) {
    this(tok, tokens, seed, 0, 0);
  }

  /**
   * @param contextShare share of the positions before the answer that count in the loss too (0: the answer only)
   * @param maxTail at most this many filler tokens after the answer (drawn uniformly), so that the
   *     question sits anywhere in the last window, not only at its end: with mem_positionals a
   *     memory key's score depends on the query's position, and a question read at inference
   *     starts its own context
   */
  public PasskeyTask(SentencePieceTokenizer tok, int tokens, long seed, double contextShare, int maxTail) {
    this(tok, tokens, seed, contextShare, maxTail, 0, 0);
  }

  /**
   * @param keyBefore with {@code inMemoryShare}, that share of the documents has its key line end
   *     before this token (e.g. where the last entry starts, so that only memory can reach it; in a
   *     short entry the key would otherwise sit beside the question most of the time and the memory
   *     lookup would hardly be trained)
   */
  public PasskeyTask(SentencePieceTokenizer tok, int tokens, long seed, double contextShare, int maxTail, int keyBefore,
      double inMemoryShare) {
    if (keyBefore < 0 || keyBefore > tokens || !(inMemoryShare >= 0 && inMemoryShare <= 1)) {
      throw new io.longmem.io.InputException("the passkey key position must be in [0, " + tokens + "] and its share in "
          + "[0, 1], got " + keyBefore + " and " + inMemoryShare);
    }
    this.keyBefore = keyBefore;
    this.inMemoryShare = inMemoryShare;
    if (!(contextShare >= 0 && contextShare <= 1)) {
      throw new io.longmem.io.InputException("the passkey context loss share must be in [0, 1], got " + contextShare);
    }
    if (maxTail < 0 || maxTail > tokens / 2) {
      throw new io.longmem.io.InputException("the passkey tail must be in [0, " + tokens / 2 + "], got " + maxTail);
    }
    this.contextShare = contextShare;
    this.maxTail = maxTail;
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

  /**
   * A key in 1..50000: half as the paper draws them (uniformly: four in five have five digits),
   * half with a number of digits drawn uniformly from 1 to 5. A model that saw few short keys
   * reads a four-digit key from the wrong place.
   */
  static int drawKey(Random random) {
    if (random.nextBoolean()) {
      return 1 + random.nextInt(50_000);
    }
    int digits = 1 + random.nextInt(5);
    int lo = digits == 1 ? 1 : (int) Math.pow(10, digits - 1);
    int hi = digits == 5 ? 50_000 : (int) Math.pow(10, digits) - 1;
    return lo + random.nextInt(hi - lo + 1);
  }

  /** A new document with a random key ({@link #drawKey}) at a random depth. */
  public Doc next() {
    int key = drawKey(random);
    lastKey = key;
    int perFiller = tok.encode(" " + Passkey.FILLER).length;
    int fixed = tok.encodeWithBos(String.join("\n", Passkey.TASK, Passkey.keyLine(key),
        Passkey.QUESTION + " " + key + ".")).length + 4;
    int tail = maxTail == 0 ? 0 : random.nextInt(maxTail + 1);
    int room = tokens - tail;
    int repeats = Math.max(0, (room - fixed) / perFiller);
    boolean inMemory = keyBefore > 0 && random.nextDouble() < inMemoryShare;
    int before = -1;
    while (true) {
      before = before < 0 ? random.nextInt(repeats + 1) : Math.min(before, repeats);
      String prompt = String.join("\n", Passkey.TASK, Passkey.fillers(before), Passkey.keyLine(key),
          Passkey.fillers(repeats - before), Passkey.QUESTION);
      int[] question = tok.encodeWithBos(prompt);
      int[] full = tok.encodeWithBos(prompt + " " + key + "."); // the full stop too: where the answer ends
      int common = 0;
      while (common < question.length && common < full.length && question[common] == full[common]) {
        common++;
      }
      if (full.length > room) {
        if (repeats == 0) {
          throw new io.longmem.io.InputException("a passkey document of " + tokens + " tokens (a tail of " + tail
              + ") cannot hold the task line, the key line and the question (" + full.length + " tokens): raise "
              + "--length or --k, or lower --passkey-tail");
        }
        repeats--;
        continue;
      }
      int pad = room - full.length;
      if (inMemory && before > 0) {
        int keyEnd = pad + tok.encodeWithBos(String.join("\n", Passkey.TASK, Passkey.fillers(before),
            Passkey.keyLine(key))).length + 1;
        if (keyEnd > keyBefore) {
          before = random.nextInt(before); // earlier, until the key line ends in memory
          continue;
        }
      }
      int[] t = new int[tokens];
      boolean[] loss = new boolean[tokens];
      t[0] = full[0]; // BOS
      for (int i = 0; i < pad; i++) {
        t[1 + i] = filler[i % filler.length];
      }
      System.arraycopy(full, 1, t, 1 + pad, full.length - 1);
      for (int i = 0; i < tail; i++) {
        t[room + i] = filler[i % filler.length];
      }
      Arrays.fill(loss, pad + common, room, true);
      if (contextShare > 0) {
        for (int i = 1; i < tokens; i++) {
          loss[i] |= (i < pad + common || i > room) && random.nextDouble() < contextShare;
        }
      }
      return new Doc(t, loss, true); // nobody else's negative: its key would be a second key there
    }
  }
}
