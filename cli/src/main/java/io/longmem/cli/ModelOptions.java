package io.longmem.cli;

import io.longmem.io.InputException;
import ai.djl.Device;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Options shared by the commands that load a model. */
final class ModelOptions {
  @Option(names = "--model", required = true, paramLabel = "DIR",
      description = "Hugging Face checkpoint directory (config.json + safetensors or pytorch_model*.bin)")
  Path model;

  @Option(names = "--device", defaultValue = "cpu", paramLabel = "cpu|gpu",
      description = "DJL device; gpu needs the CUDA build (mvn -Ppytorch-cu128). Default: ${DEFAULT-VALUE}")
  String device;

  @Option(names = "--mem-dtype", paramLabel = "float32|bfloat16|float16",
      description = "dtype memory is cast to (default: the checkpoint's mem_dtype)")
  String memDType;

  @Option(names = "--last-context-length", paramLabel = "N",
      description = "tokens of the input kept out of memory (default: the checkpoint's last_context_length)")
  Integer lastContextLength;

  @Option(names = "--compute-dtype", defaultValue = "float32", paramLabel = "float32|bfloat16",
      description = "dtype of the large matmuls; bfloat16: weights packed once, oneDNN (AMX where the CPU has it), "
          + "CPU only. Default: ${DEFAULT-VALUE}")
  String computeDType;

  Checkpoint checkpoint;

  LongLlama load() throws IOException {
    ComputeDType compute = ComputeDType.parse(computeDType);
    checkpoint = Checkpoint.open(model);
    return LongLlama.load(checkpoint, config(), device(), compute);
  }

  LongLlamaConfig config() {
    LongLlamaConfig c = checkpoint.config();
    if (memDType != null) {
      c = c.withMemDType(MemDType.parse(memDType));
    }
    if (lastContextLength != null) {
      if (lastContextLength < 0) {
        throw new InputException("--last-context-length must be >= 0, got " + lastContextLength);
      }
      c = c.withLastContextLength(lastContextLength);
    }
    return c;
  }

  Device device() {
    switch (device) {
      case "cpu":
        return Device.cpu();
      case "gpu":
        return Device.gpu();
      default:
        throw new InputException("--device must be cpu or gpu, got " + device);
    }
  }

  /** The given file, else the checkpoint's own tokenizer.model, else null. */
  SentencePieceTokenizer tokenizer(Path explicit) throws IOException {
    Path p = checkpoint.tokenizerModel(explicit);
    return p == null ? null : SentencePieceTokenizer.load(p);
  }
}
