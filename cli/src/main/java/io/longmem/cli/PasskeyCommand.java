package io.longmem.cli;

import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.passkey.Passkey;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "passkey", mixinStandardHelpOptions = true,
    description = "The passkey retrieval test of the LongLLaMA paper: accuracy and reading speed at a prompt length.")
final class PasskeyCommand implements Callable<Integer> {
  @Mixin
  ModelOptions model;

  @Mixin
  MemoryOptions memory;

  @Option(names = "--tokens", required = true, paramLabel = "N", description = "prompt length in tokens") int tokens;

  @Option(names = "--trials", defaultValue = "10", paramLabel = "T") int trials;

  @Option(names = "--seed", defaultValue = "0") long seed;

  @Option(names = "--tokenizer", paramLabel = "FILE", description = "tokenizer.model when the checkpoint has none")
  Path tokenizerFile;

  @Override
  public Integer call() throws Exception {
    try (LongLlama m = model.load(); MemoryOptions.Backend backend = memory.open(model.checkpoint.fingerprint())) {
      var tok = model.tokenizer(tokenizerFile);
      if (tok == null) {
        throw new InputException("passkey needs a tokenizer: the checkpoint has no tokenizer.model; pass --tokenizer");
      }
      Passkey.Report r = Passkey.run(m, tok, () -> backend.newMemory(m, 1), tokens, trials, seed);
      r.lines().forEach(System.out::println);
      System.out.println(r.summary() + "; " + backend.describe());
    }
    return 0;
  }
}
