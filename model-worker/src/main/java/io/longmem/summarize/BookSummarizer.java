package io.longmem.summarize;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.generate.Generator;
import io.longmem.model.memory.Memory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.util.Arrays;
import java.util.Locale;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Book-length summarization: the book is read into memory window by window (progress logged:
 * tokens, tokens/s, ETA), an instruction follows in the local context, the summary is generated.
 * A book already encoded into a collection is not read again: the memory holds it, and only the
 * instruction is read.
 */
public final class BookSummarizer {
  private static final Logger LOG = LoggerFactory.getLogger(BookSummarizer.class);
  public static final String DEFAULT_INSTRUCTION = "\n\nA summary of the text above:\n";
  /** Windows per forward call while reading the book (a progress line each). */
  private static final int WINDOWS_PER_STEP = 8;

  private final LongLlama model;
  private final SentencePieceTokenizer tokenizer;

  public BookSummarizer(LongLlama model, SentencePieceTokenizer tokenizer) {
    if (tokenizer == null) {
      throw new InputException("summarizing needs a tokenizer (the checkpoint's tokenizer.model or --tokenizer)");
    }
    this.model = model;
    this.tokenizer = tokenizer;
  }

  /** A summary and what it took. */
  public record Result(String summary, long[] ids, int bookTokens, double readSeconds, double generateSeconds,
      String stopReason) {
    public String stats() {
      String read = bookTokens == 0
          ? String.format(Locale.ROOT, "read 0 book tokens (the book was already in memory) and the instruction in %.1f s",
              readSeconds)
          : String.format(Locale.ROOT, "read %d book tokens in %.1f s (%.1f tokens/s)", bookTokens, readSeconds,
              bookTokens / Math.max(readSeconds, 1e-9));
      return String.format(Locale.ROOT, "%s; generated %d tokens in %.1f s (%.2f tokens/s); stop: %s", read, ids.length,
          generateSeconds, ids.length / Math.max(generateSeconds, 1e-9), stopReason);
    }
  }

  /**
   * @param book the book's text (tokenized with BOS), or null when {@code memory} already holds it
   * @param memory the memory of this request; closed with the cache at the end
   */
  public Result summarize(String book, String instruction, Memory memory, GenerationOptions options,
      Consumer<String> stream) {
    long[] bookIds = book == null ? new long[0] : toLong(tokenizer.encodeWithBos(book));
    long[] instr = toLong(tokenizer.encode(instruction));
    long[] prompt;
    if (bookIds.length == 0) {
      prompt = new long[instr.length + 1];
      prompt[0] = tokenizer.bosId();
      System.arraycopy(instr, 0, prompt, 1, instr.length);
    } else {
      prompt = Arrays.copyOf(bookIds, bookIds.length + instr.length);
      System.arraycopy(instr, 0, prompt, bookIds.length, instr.length);
    }
    return summarizeIds(prompt, bookIds.length, memory, options, stream);
  }

  /** The same with a prompt of token ids whose first {@code bookTokens} are the book. */
  public Result summarizeIds(long[] prompt, int bookTokens, Memory memory, GenerationOptions options,
      Consumer<String> stream) {
    int window = model.config().maxPositionEmbeddings();
    int last = options.lastContextLength();
    // whole windows that go to memory before the rest: read in steps, as the one-call forward would
    int wholeWindows = Math.max(0, prompt.length - last) / window;
    long start = System.nanoTime();
    try (LongLlamaCache cache = model.newCache(1, memory)) {
      int read = 0;
      while (read < wholeWindows * window) {
        int end = Math.min(wholeWindows * window, read + WINDOWS_PER_STEP * window);
        model.forward(cache, new long[][] {Arrays.copyOfRange(prompt, read, end)}, null, false, 0,
            LongLlama.Output.MEMORY_ONLY, null);
        read = end;
        double s = (System.nanoTime() - start) / 1e9;
        double rate = read / s;
        LOG.info(String.format(Locale.ROOT, "reading: %d of %d prompt tokens into memory, %.1f tokens/s, ETA %.0f s",
            read, prompt.length, rate, (prompt.length - read) / rate));
      }
      double readSeconds = (System.nanoTime() - start) / 1e9;
      Generator.Result r = new Generator(model, tokenizer).generate(cache,
          Arrays.copyOfRange(prompt, read, prompt.length), options, false, stream);
      return new Result(r.text(), r.ids(), bookTokens, readSeconds + r.promptSeconds(), r.decodeSeconds(), r.stopReason());
    }
  }

  private static long[] toLong(int[] a) {
    return Arrays.stream(a).asLongStream().toArray();
  }
}
