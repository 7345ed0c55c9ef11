package io.longmem.train;

import io.longmem.io.InputException;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.passkey.Passkey;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.Random;
import java.util.Set;

/**
 * The recall task, a training aid for the passkey lookup: a short run of random digits and words
 * is hidden in the passkey filler of a document's earlier entries and repeated in its last entry,
 * and predicting the repeat counts in the loss. Only memory reaches the first copy, so every
 * repeated token trains what the passkey answer needs (find in memory what followed the tokens
 * just read and copy it), with dozens of targets per document where a passkey prompt has its answer
 * only. The default pool is small, so one token seldom identifies its successor: the lookup has to match
 * the tokens before it too, as "key is" (not "sky is") must be matched to find the pass key.
 */
public final class RecallTask {
  private static final String[] WORDS = {"red", "blue", "green", "stone", "river", "apple", "house", "cloud", "tree",
      "bird", "glass", "paper", "light", "night", "water", "fire", "road", "door", "hand", "ship"};

  private final int bos;
  private final int tokens;
  private final int memoryTokens;
  private final int minRun;
  private final int maxRun;
  private final int[] filler;
  private final int[] pool;
  private final Random random;
  private final double localShare;

  public RecallTask(SentencePieceTokenizer tok, int tokens, int memoryTokens, long seed) {
    this(tok, tokens, memoryTokens, seed, 0, 0);
  }

  /**
   * @param tokens the document's length (k * L + 1)
   * @param memoryTokens where the last entry starts ((k - 1) * L): the first copy ends before it,
   *     the repeat lies after it
   * @param localShare that share of documents has the first copy in the last entry too, before the
   *     repeat: a lookup in the local context grows the previous-token heads the memory lookup is
   *     built from, which a lookup that only memory can serve gives no gradient to until it works
   * @param pool tokens to draw runs from: the ten digits and the words (0), or the digits and
   *     {@code pool - 10} vocabulary pieces (the same for a given size): with many tokens one token
   *     identifies its successor, the easier lookup a small model finds first
   */
  public RecallTask(SentencePieceTokenizer tok, int tokens, int memoryTokens, long seed, double localShare,
      int pool) {
    int last = tokens - 1 - memoryTokens;
    if (memoryTokens < 16 || last < 16) {
      throw new InputException("the recall task needs at least 16 tokens before the last entry and 16 in it, got "
          + memoryTokens + " and " + last + " (raise --length or --k)");
    }
    this.bos = tok.bosId();
    this.tokens = tokens;
    this.memoryTokens = memoryTokens;
    this.maxRun = Math.min(48, Math.min(memoryTokens - 2, last));
    this.minRun = Math.min(8, maxRun);
    this.filler = tok.encode(Passkey.FILLER + " ");
    Set<Integer> p = new LinkedHashSet<>();
    for (int d = 0; d <= 9; d++) {
      int[] ids = tok.encode(Integer.toString(d));
      p.add(ids[ids.length - 1]); // the digit piece, as inside a number (no leading space)
    }
    this.random = new Random(seed);
    if (pool == 0) {
      for (String w : WORDS) {
        int[] ids = tok.encode(w);
        if (ids.length == 1) {
          p.add(ids[0]);
        }
      }
    } else {
      if (pool < 11 || pool > tok.vocabSize() / 2) {
        throw new InputException("the recall pool must hold 11 to " + tok.vocabSize() / 2 + " tokens, got " + pool);
      }
      Random draw = new Random(0x5eedL + pool); // the same pool in every task of a run (training, evaluation)
      while (p.size() < pool) {
        p.add(300 + draw.nextInt(tok.vocabSize() - 300)); // past the control and byte pieces
      }
    }
    this.pool = p.stream().mapToInt(Integer::intValue).toArray();
    this.localShare = localShare;
    if (!(localShare >= 0 && localShare <= 1)) {
      throw new InputException("the recall task's local share must be in [0, 1], got " + localShare);
    }
  }

  /** A new document: filler, the run at a random place in memory, the run again in the last entry. */
  public Doc next() {
    int[] t = new int[tokens];
    boolean[] loss = new boolean[tokens];
    t[0] = bos;
    int phase = random.nextInt(filler.length);
    for (int i = 1; i < tokens; i++) {
      t[i] = filler[(phase + i) % filler.length];
    }
    int last = tokens - memoryTokens; // the last entry's tokens and the final target
    boolean local = random.nextDouble() < localShare;
    int most = local ? Math.min(maxRun, last / 2) : maxRun;
    int n = minRun + random.nextInt(most - minRun + 1);
    int[] run = new int[n];
    for (int i = 0; i < n; i++) {
      run[i] = pool[random.nextInt(pool.length)];
    }
    int first;
    int again;
    if (local) {
      first = memoryTokens + random.nextInt(last - 2 * n + 1);
      again = first + n + random.nextInt(last - (first - memoryTokens) - 2 * n + 1);
    } else {
      first = 1 + random.nextInt(memoryTokens - n);
      again = memoryTokens + random.nextInt(last - n + 1);
    }
    System.arraycopy(run, 0, t, first, n);
    System.arraycopy(run, 0, t, again, n);
    Arrays.fill(loss, again + 1, again + n, true); // its first token follows filler: not predictable
    return new Doc(t, loss);
  }

  /** The tokens runs are drawn from. */
  int[] pool() {
    return pool.clone();
  }
}
