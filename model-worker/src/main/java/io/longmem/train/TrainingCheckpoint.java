package io.longmem.train;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.io.AtomicFiles;
import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.SafetensorsFile;
import io.longmem.model.checkpoint.SafetensorsWriter;
import io.longmem.model.checkpoint.StorageType;
import io.longmem.model.checkpoint.StoredTensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * What training writes: a Hugging Face LongLLaMA directory (config.json, model.safetensors,
 * tokenizer.model) that longmem's loader and the reference read; a resumable checkpoint is that
 * directory in float32 plus optimizer.safetensors (AdamW's moments) and trainer.json (step, seed).
 * A directory is written beside its place and renamed into it, so a reader never sees half of one.
 */
public final class TrainingCheckpoint {
  static final String OPTIMIZER = "optimizer.safetensors";
  static final String STATE = "trainer.json";

  private TrainingCheckpoint() {}

  /** The model as a Hugging Face directory (weights as {@code type}), replacing {@code dir}. */
  public static void export(LongLlama model, Path tokenizer, StorageType type, Path dir) throws IOException {
    replace(dir, tmp -> writeModel(model, tokenizer, type, tmp));
  }

  /** A resumable checkpoint of the trainer in {@code dir} (float32 weights, optimizer state, step). */
  public static void save(Trainer trainer, Path tokenizer, Path dir) throws IOException {
    replace(dir, tmp -> {
      writeModel(trainer.model(), tokenizer, StorageType.F32, tmp);
      SafetensorsWriter.write(tmp.resolve(OPTIMIZER), trainer.optimizer().state(), StorageType.F32);
      JsonObject s = new JsonObject();
      s.addProperty("step", trainer.step());
      s.addProperty("seed", trainer.options().seed());
      s.addProperty("steps", trainer.options().steps());
      Files.writeString(tmp.resolve(STATE), s.toString(), StandardCharsets.UTF_8);
    });
  }

  /** A checkpoint's step, or an error naming what is missing. */
  public static long step(Path dir) throws IOException {
    Path f = dir.resolve(STATE);
    if (!Files.isRegularFile(f) || !Files.isRegularFile(dir.resolve(OPTIMIZER))) {
      throw new InputException("--resume " + dir + ": not a training checkpoint (no " + STATE + " or " + OPTIMIZER + ")");
    }
    try {
      return JsonParser.parseString(Files.readString(f)).getAsJsonObject().get("step").getAsLong();
    } catch (RuntimeException e) {
      throw new InputException("--resume " + dir + ": " + STATE + " is unreadable: " + e.getMessage());
    }
  }

  /** A trainable float32 copy of the model in {@code dir} (a checkpoint or any LongLLaMA directory). */
  public static LongLlama loadTrainable(Path dir, Device device, DataType type) throws IOException {
    try (LongLlama loaded = LongLlama.load(Checkpoint.open(dir), Device.cpu())) {
      return Init.copy(loaded, NDManager.newBaseManager(device), type);
    }
  }

  /** Restores step and optimizer moments from a checkpoint written by {@link #save}. */
  public static void restore(Trainer trainer, Path dir) throws IOException {
    long step = step(dir);
    Map<String, float[]> state = new HashMap<>();
    for (Map.Entry<String, StoredTensor> e : SafetensorsFile.open(dir.resolve(OPTIMIZER)).entrySet()) {
      state.put(e.getKey(), e.getValue().toFloatArray());
    }
    trainer.restore(step, state);
  }

  private static void writeModel(LongLlama model, Path tokenizer, StorageType type, Path dir) throws IOException {
    String dtype = type == StorageType.BF16 ? "bfloat16" : "float32";
    Files.writeString(dir.resolve("config.json"), HfConfig.text(model.config(), dtype), StandardCharsets.UTF_8);
    try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) { // frees the split views
      scope.suppressNotUsedWarning();
      SafetensorsWriter.write(dir.resolve("model.safetensors"), model.huggingFaceTensors(), type);
    }
    if (tokenizer != null) {
      Files.copy(tokenizer, dir.resolve("tokenizer.model"), StandardCopyOption.REPLACE_EXISTING);
    }
  }

  /** Writes a new directory beside {@code dir}, then moves it into place (the old one goes). */
  private static void replace(Path dir, AtomicFiles.Writer writer) throws IOException {
    Path abs = dir.toAbsolutePath();
    Files.createDirectories(abs.getParent());
    Path tmp = Files.createTempDirectory(abs.getParent(), "." + abs.getFileName() + ".");
    Path old = abs.resolveSibling("." + abs.getFileName() + ".old");
    try {
      writer.writeTo(tmp);
      delete(old);
      if (Files.exists(abs)) {
        Files.move(abs, old, StandardCopyOption.ATOMIC_MOVE);
      }
      Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE);
      delete(old);
    } finally {
      delete(tmp);
    }
  }

  private static void delete(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (Stream<Path> all = Files.walk(p)) {
      for (Path f : all.sorted(Comparator.reverseOrder()).toList()) {
        Files.delete(f);
      }
    }
  }
}
