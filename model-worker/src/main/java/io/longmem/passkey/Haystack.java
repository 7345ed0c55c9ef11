package io.longmem.passkey;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.memory.Memory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.generate.Generator;
import java.util.Arrays;
import java.util.Random;

/**
 * The passkey test split the way a served collection holds it: the haystack (task line, filler,
 * the key line at a random depth, more filler) is a document read into memory beforehand, by the
 * encode job or in process; the question is read later, in a context of its own, against that
 * memory. Only memory connects the two, so a right answer is the memory's doing.
 */
public final class Haystack {
  /** Greedy tokens generated for an answer: a space and up to five digits, and a little slack. */
  static final int ANSWER_TOKENS = 8;

  private final String text;
  private final int key;
  private final double depth;
  private long[] ids; // tokenized once, when first asked

  private Haystack(String text, int key, double depth) {
    this.text = text;
    this.key = key;
    this.depth = depth;
  }

  /** A haystack of about {@code tokens} tokens (with BOS) with a random key (1..50000) at a random depth. */
  public static Haystack make(SentencePieceTokenizer tok, long tokens, Random random) {
    int key = 1 + random.nextInt(50_000);
    int fixed = 1 + tok.encode(Passkey.TASK + "\n" + Passkey.keyLine(key)).length + 2;
    int perFiller = tok.encode(" " + Passkey.FILLER).length;
    long repeats = Math.max(0, (tokens - fixed) / perFiller);
    if (repeats > Integer.MAX_VALUE / 2) {
      throw new InputException("a haystack of " + tokens + " tokens is too long to build as one text");
    }
    int before = (int) (random.nextDouble() * (repeats + 1));
    String text = String.join("\n", Passkey.TASK, Passkey.fillers(before), Passkey.keyLine(key),
        Passkey.fillers((int) repeats - before));
    return new Haystack(text, key, before / (double) Math.max(1, repeats));
  }

  /** The haystack's text (no question). */
  public String text() {
    return text;
  }

  /** The hidden key. */
  public int key() {
    return key;
  }

  /** Where the key line sits, 0 (first) to 1 (last). */
  public double depth() {
    return depth;
  }

  /**
   * The question as read after the haystack: one filler sentence, then "What is the pass key? The
   * pass key is" (no BOS: it continues the document memory holds).
   */
  public static long[] question(SentencePieceTokenizer tok) {
    return Arrays.stream(tok.encode(Passkey.FILLER + "\n" + Passkey.QUESTION)).asLongStream().toArray();
  }

  /** What the model answers to the question with {@code memory} holding a haystack. */
  public record Answer(int key, String text, double readSeconds, double seconds) {}

  /** The haystack's ids, with BOS (tokenized once). */
  public long[] ids(SentencePieceTokenizer tok) {
    if (ids == null) {
      ids = Arrays.stream(tok.encodeWithBos(text)).asLongStream().toArray();
    }
    return ids;
  }

  /**
   * Asks the question against {@code memory}, after reading {@code haystack} into it when given
   * (null: the memory already holds it, as a served collection does); the memory is closed
   * afterwards. Every window of the haystack goes to memory, the question starts a context of its own.
   */
  public static Answer ask(LongLlama model, SentencePieceTokenizer tok, Memory memory, long[] haystack) {
    long start = System.nanoTime();
    try (LongLlamaCache cache = model.newCache(1, memory)) {
      if (haystack != null) {
        model.forward(cache, new long[][] {haystack}, null, false, 0, LongLlama.Output.MEMORY_ONLY, null);
      }
      double read = (System.nanoTime() - start) / 1e9;
      // the question and its answer stay in one local window, as a question is read in training
      // (last_context_length would send its first tokens to memory)
      GenerationOptions greedy = GenerationOptions.greedy(ANSWER_TOKENS, -1, model.config().maxPositionEmbeddings());
      Generator.Result r = new Generator(model, tok).generate(cache, question(tok), greedy, false, null);
      String text = r.text() == null ? "" : r.text().strip();
      return new Answer(Passkey.answer(text), text, read, (System.nanoTime() - start) / 1e9);
    }
  }
}
