package io.longmem.passkey;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.memory.Memory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The passkey retrieval test of the LongLLaMA paper (the landmark-attention prompt): a pass key
 * hidden at a random depth in filler text of a given length; the model is asked for it. The
 * haystack is read into memory first and the question after it in a context of its own
 * ({@link Haystack}), as with a haystack a served collection holds.
 */
public final class Passkey {
  private static final Logger LOG = LoggerFactory.getLogger(Passkey.class);
  public static final String TASK = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
      + "them. I will quiz you about the important information there.";
  public static final String FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
  public static final String QUESTION = "What is the pass key? The pass key is";

  private Passkey() {}

  /** {@code n} filler sentences joined by spaces. */
  public static String fillers(int n) {
    return String.join(" ", java.util.Collections.nCopies(n, FILLER));
  }

  public static String keyLine(int key) {
    return "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  }

  /** The key the model gave: the first number in its answer, or -1. */
  static int answer(String text) {
    Matcher m = Pattern.compile("\\d+").matcher(text == null ? "" : text);
    return m.find() ? Integer.parseInt(m.group().length() > 9 ? "-1" : m.group()) : -1;
  }

  /** Results of a run. */
  public record Report(int tokens, int trials, int correct, double tokensPerSecond, List<String> lines) {
    public double accuracy() {
      return correct / (double) trials;
    }

    public String summary() {
      return String.format(Locale.ROOT, "passkey: %d of %d correct (%.1f%%) at ~%d tokens; reading %.1f tokens/s",
          correct, trials, 100 * accuracy(), tokens, tokensPerSecond);
    }
  }

  /**
   * Runs {@code trials} haystacks of about {@code tokens} tokens, each read into a fresh memory,
   * then the question in a context of its own ({@link Haystack#ask}).
   */
  public static Report run(LongLlama model, SentencePieceTokenizer tok, Supplier<Memory> memory, int tokens, int trials,
      long seed) {
    if (tokens < 64) {
      throw new InputException("--tokens must be at least 64, got " + tokens);
    }
    if (trials < 1) {
      throw new InputException("--trials must be >= 1, got " + trials);
    }
    Random random = new Random(seed);
    int correct = 0;
    long read = 0;
    double seconds = 0;
    List<String> lines = new ArrayList<>();
    for (int t = 0; t < trials; t++) {
      Haystack h = Haystack.make(tok, tokens, random);
      long[] ids = h.ids(tok);
      Haystack.Answer a = Haystack.ask(model, tok, memory.get(), ids);
      boolean ok = a.key() == h.key();
      correct += ok ? 1 : 0;
      read += ids.length;
      seconds += a.readSeconds();
      String line = String.format(Locale.ROOT, "trial %d: %d tokens, key %d at depth %.0f%%, answer '%s' -> %s", t + 1,
          ids.length, h.key(), 100 * h.depth(), a.text(), ok ? "correct" : "wrong");
      LOG.info(line);
      lines.add(line);
    }
    return new Report(tokens, trials, correct, read / Math.max(seconds, 1e-9), lines);
  }
}
