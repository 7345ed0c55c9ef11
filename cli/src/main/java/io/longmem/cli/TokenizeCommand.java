package io.longmem.cli;

import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.io.Json;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "tokenize", mixinStandardHelpOptions = true,
    description = "Print the token ids of a text (no BOS) as a JSON list.")
final class TokenizeCommand implements Callable<Integer> {
  @Option(names = "--tokenizer", required = true, paramLabel = "FILE", description = "SentencePiece tokenizer.model")
  Path tokenizer;

  @Option(names = "--text", required = true, paramLabel = "TEXT")
  String text;

  @Override
  public Integer call() throws Exception {
    int[] ids = SentencePieceTokenizer.load(tokenizer).encode(text);
    System.out.println(Json.idList(Arrays.stream(ids).asLongStream().toArray()));
    return 0;
  }
}
