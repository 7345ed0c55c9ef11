package io.longmem.model.generate;

import io.longmem.io.InputException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Generation as Hugging Face's {@code generate} drives the reference: the prompt once with the
 * generation cache on, then one token at a time; the local cache overflows into memory on the way.
 */
public final class Generator {
  private static final Logger LOG = LoggerFactory.getLogger(Generator.class);

  private final LongLlama model;
  private final SentencePieceTokenizer tokenizer;

  /** @param tokenizer used for stop strings and streamed text; may be null */
  public Generator(LongLlama model, SentencePieceTokenizer tokenizer) {
    this.model = model;
    this.tokenizer = tokenizer;
  }

  /**
   * @param ids generated token ids (the EOS, if hit, included)
   * @param stepLogits the logits each generated token was chosen from, if recorded
   * @param text decoded generated text (cut at a stop string), or null without a tokenizer
   * @param stopReason "eos", "stop-string" or "max-new-tokens"
   */
  public record Result(long[] ids, float[][] stepLogits, String text, String stopReason, double promptSeconds,
      double decodeSeconds) {
    public double decodeTokensPerSecond() {
      return ids.length / Math.max(decodeSeconds, 1e-9);
    }
  }

  /** Generates after {@code prompt} on a fresh cache with dense memory. */
  public Result generate(long[] prompt, GenerationOptions options, boolean recordLogits, Consumer<String> stream) {
    try (LongLlamaCache cache = model.newCache(1)) {
      return generate(cache, prompt, options, recordLogits, stream);
    }
  }

  /** Generates after {@code prompt}, reading it on top of what {@code cache} already holds. */
  public Result generate(LongLlamaCache cache, long[] prompt, GenerationOptions options, boolean recordLogits,
      Consumer<String> stream) {
    if (prompt.length == 0) {
      throw new InputException("empty prompt: give at least one token");
    }
    if (!options.stopStrings().isEmpty() && tokenizer == null) {
      throw new InputException("stop strings need a tokenizer");
    }
    Sampler sampler = new Sampler(options);
    List<Long> out = new ArrayList<>();
    List<float[]> logitsRows = new ArrayList<>();
    String stopReason = "max-new-tokens";
    String text = null;
    int streamed = 0;
    try (NDManager scratch = model.manager().newSubManager()) {
      long t0 = System.nanoTime();
      float[] logits = step(cache, new long[][] {prompt}, options, scratch);
      long t1 = System.nanoTime();
      while (true) {
        int next = sampler.next(logits);
        out.add((long) next);
        if (recordLogits) {
          logitsRows.add(logits);
        }
        if (tokenizer != null) {
          text = tokenizer.decode(out.stream().mapToInt(Long::intValue).toArray());
          String stop = firstStop(text, options);
          if (stop != null) {
            text = text.substring(0, text.indexOf(stop));
          }
          int safe = text.endsWith("\uFFFD") ? text.length() - 1 : text.length();
          if (stream != null && safe > streamed) {
            stream.accept(text.substring(streamed, safe));
            streamed = safe;
          }
          if (stop != null) {
            stopReason = "stop-string";
            break;
          }
        }
        if (next == options.eosId()) {
          stopReason = "eos";
          break;
        }
        if (out.size() >= options.maxNewTokens()) {
          break;
        }
        logits = step(cache, new long[][] {{next}}, options, scratch);
      }
      long t2 = System.nanoTime();
      if (stream != null && text != null && text.length() > streamed) {
        stream.accept(text.substring(streamed));
      }
      double promptSeconds = (t1 - t0) / 1e9;
      double decodeSeconds = (t2 - t1) / 1e9;
      LOG.debug("prompt {} tokens in {} s ({} tokens/s); generated {} tokens in {} s ({} tokens/s), stop: {}",
          prompt.length, String.format("%.3f", promptSeconds), String.format("%.1f", prompt.length / promptSeconds),
          out.size(), String.format("%.3f", decodeSeconds),
          String.format("%.2f", out.size() / Math.max(decodeSeconds, 1e-9)), stopReason);
      return new Result(out.stream().mapToLong(Long::longValue).toArray(),
          recordLogits ? logitsRows.toArray(new float[0][]) : null, text, stopReason, promptSeconds, decodeSeconds);
    }
  }

  private float[] step(LongLlamaCache cache, long[][] ids, GenerationOptions options, NDManager scratch) {
    try (NDArray logits = model.forward(cache, ids, null, true, options.lastContextLength(),
        LongLlama.Output.LAST_LOGITS, scratch)) {
      return logits.toFloatArray();
    }
  }

  private static String firstStop(String text, GenerationOptions options) {
    String first = null;
    int at = Integer.MAX_VALUE;
    for (String s : options.stopStrings()) {
      int i = text.indexOf(s);
      if (i >= 0 && i < at) {
        at = i;
        first = s;
      }
    }
    return first;
  }
}
