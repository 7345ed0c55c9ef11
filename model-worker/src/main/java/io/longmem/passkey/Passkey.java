package io.longmem.passkey;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.memory.Memory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.summarize.BookSummarizer;
import java.util.ArrayList;
import java.util.Arrays;
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
 * hidden at a random depth in filler text of a given length; the model is asked for it.
 */
public final class Passkey {
  private static final Logger LOG = LoggerFactory.getLogger(Passkey.class);
  public static final String TASK = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
      + "them. I will quiz you about the important information there.";
  public static final String FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
  public static final String QUESTION = "What is the pass key? The pass key is";

  private Passkey() {}

  public static String keyLine(int key) {
    return "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  }

  /** One trial's prompt: its ids (with BOS), the key, and the filler repeats before and after it. */
  public record Prompt(long[] ids, int key, int before, int after) {}

  /** A prompt of about {@code tokens} tokens with a random key at a random depth. */
  public static Prompt prompt(SentencePieceTokenizer tok, int tokens, Random random) {
    int key = 1 + random.nextInt(50_000);
    int fixed = 1 + tok.encode(String.join("\n", TASK, keyLine(key), QUESTION)).length + 4;
    int perFiller = tok.encode(" " + FILLER).length;
    int repeats = Math.max(0, (tokens - fixed) / perFiller);
    int before = random.nextInt(repeats + 1);
    String text = String.join("\n", TASK, String.join(" ", java.util.Collections.nCopies(before, FILLER)), keyLine(key),
        String.join(" ", java.util.Collections.nCopies(repeats - before, FILLER)), QUESTION);
    return new Prompt(Arrays.stream(tok.encodeWithBos(text)).asLongStream().toArray(), key, before, repeats - before);
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

  /** Runs {@code trials} prompts of about {@code tokens} tokens, each with a fresh memory. */
  public static Report run(LongLlama model, SentencePieceTokenizer tok, Supplier<Memory> memory, int tokens, int trials,
      long seed) {
    if (tokens < 64) {
      throw new InputException("--tokens must be at least 64, got " + tokens);
    }
    if (trials < 1) {
      throw new InputException("--trials must be >= 1, got " + trials);
    }
    Random random = new Random(seed);
    BookSummarizer reader = new BookSummarizer(model, tok);
    GenerationOptions greedy = GenerationOptions.greedy(8, -1, model.config().lastContextLength());
    int correct = 0;
    long read = 0;
    double seconds = 0;
    List<String> lines = new ArrayList<>();
    for (int t = 0; t < trials; t++) {
      Prompt p = prompt(tok, tokens, random);
      BookSummarizer.Result r = reader.summarizeIds(p.ids(), p.ids().length, memory.get(), greedy, null);
      int got = answer(r.summary());
      boolean ok = got == p.key();
      correct += ok ? 1 : 0;
      read += p.ids().length;
      seconds += r.readSeconds();
      String line = String.format(Locale.ROOT, "trial %d: %d tokens, key %d at depth %.0f%%, answer '%s' -> %s", t + 1,
          p.ids().length, p.key(), 100.0 * p.before() / Math.max(1, p.before() + p.after()),
          r.summary() == null ? "" : r.summary().strip(), ok ? "correct" : "wrong");
      LOG.info(line);
      lines.add(line);
    }
    return new Report(tokens, trials, correct, read / Math.max(seconds, 1e-9), lines);
  }
}
