package io.longmem.train;

import io.longmem.io.InputException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;

/**
 * Document-aware packing with k entries per document (FoT's KPackingDAPipeline, written anew):
 * the batch is B / k slots of k consecutive entries; each slot reads one document stream, its
 * k * L tokens cut into the k entries in order, so a slot's earlier entries hold the earlier parts
 * of the document its later entries continue (cross-batch positives) and other slots hold other
 * documents (negatives). A document that ends mid-slot is followed by the next one in the same
 * slot (documents carry their own BOS/EOS); nothing is padded.
 *
 * <p>A slot may instead take one synthetic document of exactly k * L + 1 tokens (a passkey
 * prompt), with probability {@code syntheticShare}: its answer then sits at the end of the slot's
 * last entry and its key in an earlier part of the same document.
 */
public final class KPacking {
  private final int batch;
  private final int length;
  private final int k;
  private final Iterator<Doc> texts;
  private final Supplier<Doc> synthetic;
  private final double syntheticShare;
  private final Random random;
  private final List<Stream> slots = new ArrayList<>();

  /**
   * @param texts documents to pack (null: synthetic only); an iterator that ends stops the run
   * @param synthetic makes a document of exactly k * length + 1 tokens (null: texts only)
   */
  public KPacking(int batch, int length, int k, Iterator<Doc> texts, Supplier<Doc> synthetic, double syntheticShare,
      long seed) {
    if (k < 1 || batch % k != 0) {
      throw new InputException("--batch " + batch + " must be a multiple of --k " + k);
    }
    if (length < 2) {
      throw new InputException("--length must be >= 2, got " + length);
    }
    if (texts == null && synthetic == null) {
      throw new InputException("no training data: give --data or a synthetic task");
    }
    this.batch = batch;
    this.length = length;
    this.k = k;
    this.texts = texts;
    this.synthetic = synthetic;
    this.syntheticShare = texts == null ? 1.0 : synthetic == null ? 0.0 : syntheticShare;
    this.random = new Random(seed);
    for (int s = 0; s < batch / k; s++) {
      slots.add(new Stream());
    }
  }

  /** The next batch. */
  public Batch next() {
    long[][] ids = new long[batch][length];
    List<Integer> positions = new ArrayList<>();
    List<Long> targets = new ArrayList<>();
    boolean[] privateEntries = new boolean[batch];
    int span = k * length;
    for (int s = 0; s < slots.size(); s++) {
      Doc d;
      if (random.nextDouble() < syntheticShare) {
        d = synthetic.get();
        if (d.tokens().length != span + 1) {
          throw new IllegalStateException("a synthetic document of " + d.tokens().length + " tokens, not " + (span + 1));
        }
      } else {
        d = slots.get(s).take(span + 1);
      }
      java.util.Arrays.fill(privateEntries, s * k, (s + 1) * k, d.isPrivate());
      for (int i = 0; i < span; i++) {
        int row = s * k + i / length;
        int t = i % length;
        ids[row][t] = d.tokens()[i];
        if (d.loss()[i + 1]) {
          positions.add(row * length + t);
          targets.add((long) d.tokens()[i + 1]);
        }
      }
    }
    return new Batch(ids, positions.stream().mapToInt(Integer::intValue).toArray(),
        targets.stream().mapToLong(Long::longValue).toArray(), privateEntries);
  }

  /** One slot's document stream; the last token taken is kept as the first of the next span. */
  private final class Stream {
    private int[] tokens = new int[0];
    private boolean[] loss = new boolean[0];
    private int at;

    Doc take(int n) {
      while (tokens.length - at < n) {
        if (!texts.hasNext()) {
          throw new InputException("the training data has no documents left (an empty corpus?)");
        }
        Doc next = texts.next();
        int left = tokens.length - at;
        int[] t = new int[left + next.tokens().length];
        boolean[] l = new boolean[t.length];
        System.arraycopy(tokens, at, t, 0, left);
        System.arraycopy(loss, at, l, 0, left);
        System.arraycopy(next.tokens(), 0, t, left, next.tokens().length);
        System.arraycopy(next.loss(), 0, l, left, next.tokens().length);
        tokens = t;
        loss = l;
        at = 0;
      }
      Doc d = new Doc(java.util.Arrays.copyOfRange(tokens, at, at + n), java.util.Arrays.copyOfRange(loss, at, at + n));
      at += n - 1;
      return d;
    }
  }
}
