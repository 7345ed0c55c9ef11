package io.longmem.cli;

import io.longmem.model.LongLlama;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.generate.Generator;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.util.Json;
import io.longmem.util.Npy;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true,
    description = "Read a prompt (with the generation cache on), then generate one token at a time; "
        + "text streams to stdout, speed goes to stderr.")
final class GenerateCommand implements Callable<Integer> {
  @Mixin
  ModelOptions model;

  @Mixin
  MemoryOptions memory;

  @ArgGroup(exclusive = true, multiplicity = "1")
  Input input;

  static final class Input {
    @Option(names = "--prompt", paramLabel = "TEXT", description = "prompt text (tokenized with BOS)")
    String prompt;

    @Option(names = "--input-ids", paramLabel = "IDS.json", description = "prompt as a JSON list of token ids")
    Path inputIds;
  }

  @Option(names = "--max-new-tokens", required = true, paramLabel = "N")
  int maxNewTokens;

  @Option(names = "--greedy", description = "pick the most likely token (the default)")
  boolean greedy;

  @Option(names = "--temperature", paramLabel = "T", description = "sample with this temperature")
  Float temperature;

  @Option(names = "--top-k", paramLabel = "K", description = "sample among the K most likely tokens")
  Integer topK;

  @Option(names = "--top-p", paramLabel = "P", description = "sample among the most likely tokens holding mass P")
  Float topP;

  @Option(names = "--seed", paramLabel = "S", description = "sampling seed (default 0)")
  Long seed;

  @Option(names = "--stop", paramLabel = "STR", description = "stop when the text contains STR (repeatable)")
  List<String> stops = new ArrayList<>();

  @Option(names = "--no-eos", description = "do not stop at the end-of-sequence token")
  boolean noEos;

  @Option(names = "--tokenizer", paramLabel = "FILE",
      description = "tokenizer.model when the checkpoint has none")
  Path tokenizerFile;

  @Option(names = "--output-ids", paramLabel = "OUT.json", description = "write the generated ids")
  Path outputIds;

  @Option(names = "--output-step-logits", paramLabel = "OUT.npy",
      description = "write float32 [generated, vocab]: the logits each token was chosen from")
  Path outputStepLogits;

  @Override
  public Integer call() throws Exception {
    boolean sampling = temperature != null || topK != null || topP != null || seed != null;
    if (greedy && sampling) {
      throw new IllegalArgumentException("--greedy contradicts --temperature/--top-k/--top-p/--seed");
    }
    try (LongLlama m = model.load(); MemoryOptions.Backend backend = memory.open(model.checkpoint.fingerprint())) {
      SentencePieceTokenizer tokenizer = model.tokenizer(tokenizerFile);
      long[] prompt;
      if (input.prompt != null) {
        if (tokenizer == null) {
          throw new IllegalArgumentException("--prompt needs a tokenizer: the checkpoint has no tokenizer.model; "
              + "pass --tokenizer FILE or --input-ids");
        }
        prompt = java.util.Arrays.stream(tokenizer.encodeWithBos(input.prompt)).asLongStream().toArray();
      } else {
        prompt = Json.readIds(input.inputIds);
      }
      if (tokenizer != null) {
        m.config().checkTokenizer(tokenizer.vocabSize());
      }
      GenerationOptions options = new GenerationOptions(maxNewTokens, !sampling,
          temperature != null ? temperature : 1f, topK != null ? topK : 0, topP != null ? topP : 1f,
          seed != null ? seed : 0L, noEos ? -1 : m.config().eosTokenId(), stops, m.config().lastContextLength());
      PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
      Generator.Result r;
      try (io.longmem.model.LongLlamaCache cache = m.newCache(1, backend.newMemory(m, 1))) {
        r = new Generator(m, tokenizer).generate(cache, prompt, options, outputStepLogits != null, text -> out.print(text));
      }
      if (tokenizer != null) {
        out.println();
      } else {
        out.println(Json.idList(r.ids()));
      }
      if (outputIds != null) {
        Json.writeAtomically(outputIds, Json.idList(r.ids()) + "\n");
      }
      if (outputStepLogits != null) {
        int vocab = m.config().vocabSize();
        float[] flat = new float[r.ids().length * vocab];
        for (int i = 0; i < r.ids().length; i++) {
          System.arraycopy(r.stepLogits()[i], 0, flat, i * vocab, vocab);
        }
        Npy.write(outputStepLogits, new long[] {r.ids().length, vocab}, flat);
      }
      System.err.printf("prompt %d tokens: %.1f tokens/s; generated %d tokens: %.2f tokens/s (%.1f ms/token); stop: %s; "
          + "%s%n", prompt.length, prompt.length / Math.max(r.promptSeconds(), 1e-9), r.ids().length,
          r.decodeTokensPerSecond(), 1000 * r.decodeSeconds() / r.ids().length, r.stopReason(), backend.describe());
    }
    return 0;
  }
}
