package io.longmem.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.io.Json;
import io.longmem.io.Npy;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "logits", mixinStandardHelpOptions = true,
    description = "Logits of every input token, the whole input in one call without a generation cache "
        + "(the reference's model(input_ids, use_cache=False, last_context_length=N)); writes float32 [L, vocab].")
final class LogitsCommand implements Callable<Integer> {
  @Mixin
  ModelOptions model;

  @Option(names = "--input-ids", required = true, paramLabel = "IDS.json", description = "JSON list of token ids")
  Path inputIds;

  @Option(names = "--output", required = true, paramLabel = "OUT.npy")
  Path output;

  @Override
  public Integer call() throws Exception {
    long[] ids = Json.readIds(inputIds);
    try (LongLlama m = model.load(); NDManager out = NDManager.newBaseManager();
         LongLlamaCache cache = m.newCache(1);
         NDArray logits = m.forward(cache, new long[][] {ids}, null, false, m.config().lastContextLength(),
             LongLlama.Output.ALL_LOGITS, out)) {
      Npy.write(output, new long[] {ids.length, m.config().vocabSize()}, logits.toFloatArray());
    }
    System.err.println("wrote " + output + " [" + ids.length + ", " + model.checkpoint.config().vocabSize() + "]");
    return 0;
  }
}
