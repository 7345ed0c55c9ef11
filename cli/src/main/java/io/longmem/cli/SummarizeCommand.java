package io.longmem.cli;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.summarize.BookSummarizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "summarize", mixinStandardHelpOptions = true,
    description = "Summarize a book: read it into memory (or use a collection that holds it), then generate a "
        + "summary; the summary streams to stdout, progress and speed go to stderr.")
final class SummarizeCommand implements Callable<Integer> {
  @Mixin
  ModelOptions model;

  @Mixin
  MemoryOptions memory;

  @Option(names = "--book", paramLabel = "FILE", description = "the book as UTF-8 text (omit when --collection/--document hold it)")
  Path book;

  @Option(names = "--instruction", paramLabel = "TEXT", description = "what follows the book (default: a summary request)")
  String instruction = BookSummarizer.DEFAULT_INSTRUCTION;

  @Option(names = "--max-new-tokens", defaultValue = "256", paramLabel = "N") int maxNewTokens;

  @Option(names = "--temperature", paramLabel = "T", description = "sample (default: greedy)") Float temperature;

  @Option(names = "--seed", defaultValue = "0") long seed;

  @Option(names = "--tokenizer", paramLabel = "FILE", description = "tokenizer.model when the checkpoint has none")
  Path tokenizerFile;

  @Override
  public Integer call() throws Exception {
    if (book == null && memory.documents.isEmpty()) {
      throw new InputException("give --book FILE, or --collection C --document D for a book already encoded");
    }
    String text = null;
    if (book != null) {
      text = Files.readString(book, StandardCharsets.UTF_8);
      if (text.isBlank()) {
        throw new InputException("--book " + book + " is empty");
      }
    }
    try (LongLlama m = model.load(); MemoryOptions.Backend backend = memory.open(model.checkpoint.fingerprint())) {
      BookSummarizer summarizer = new BookSummarizer(m, model.tokenizer(tokenizerFile));
      GenerationOptions options = new GenerationOptions(maxNewTokens, temperature == null, temperature == null ? 1f
          : temperature, 0, 1f, seed, m.config().eosTokenId(), List.of(), m.config().lastContextLength());
      PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
      BookSummarizer.Result r = summarizer.summarize(text, instruction, backend.newMemory(m, 1), options, out::print);
      out.println();
      System.err.println(r.stats() + "; " + backend.describe());
    }
    return 0;
  }
}
