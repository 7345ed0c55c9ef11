package io.longmem.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.model.CrossBatch;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.StorageType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The training loop, its checkpoints and what it exports. */
class TrainerTest {
  @TempDir
  Path tmp;

  private static TrainOptions options(int steps, double lr) {
    return new TrainOptions(steps, 4, 12, 2, 1, 3, 0.5, true, lr, 2, 0.1, 0.01, 1.0, 5, 0, 0, 0, 1000,
        StorageType.F32);
  }

  @Test
  void aShortRunLowersTheLossOnAFixedBatch() throws Exception {
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 1)) {
      Batch batch = Tiny.batch(Tiny.ids(4, 12, 9));
      Trainer trainer = new Trainer(model, options(30, 1e-2));
      double before = trainer.evaluate(List.of(batch)).loss();
      Trainer.Result r = trainer.run(() -> batch, List.of(), null);
      double after = trainer.evaluate(List.of(batch)).loss();
      assertEquals(30, r.steps());
      assertTrue(after < 0.6 * before, "loss " + before + " -> " + after);
    }
  }

  @Test
  void anExportedModelLoadsBackWithTheSameLogitsAndEveryReferenceField() throws Exception {
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 2)) {
      Batch batch = Tiny.batch(Tiny.ids(4, 12, 3));
      new Trainer(model, options(3, 1e-2)).run(() -> batch, List.of(), null);
      Path out = tmp.resolve("model");
      TrainingCheckpoint.export(model, null, StorageType.F32, out);
      long[][] ids = Tiny.ids(2, 10, 4);
      float[] trained;
      try (NDManager m = model.manager().newSubManager()) {
        trained = Tiny.floats(model.logits(model.trainingForward(m.create(ids), CrossBatch.none(2))));
      }
      try (LongLlama loaded = LongLlama.load(Checkpoint.open(out), Device.cpu());
          LongLlamaCache cache = loaded.newCache(2); NDManager m = loaded.manager().newSubManager()) {
        float[] back = Tiny.floats(loaded.forward(cache, ids, null, false, 10, LongLlama.Output.ALL_LOGITS, m));
        assertTrue(Tiny.maxAbsDiff(trained, back) < 1e-5, "logits differ by " + Tiny.maxAbsDiff(trained, back));
      }
      // trained: not the initial weights any more
      try (LongLlama fresh = Tiny.model(DataType.FLOAT32, 2); NDManager m = fresh.manager().newSubManager()) {
        float[] initial = Tiny.floats(fresh.logits(fresh.trainingForward(m.create(ids), CrossBatch.none(2))));
        assertTrue(Tiny.maxAbsDiff(trained, initial) > 1e-3);
      }
      JsonObject config = JsonParser.parseString(Files.readString(out.resolve("config.json"))).getAsJsonObject();
      for (String field : HfConfig.REFERENCE_FIELDS) {
        assertTrue(config.has(field), "config.json lacks " + field);
      }
      LongLlamaConfig c = model.config();
      assertEquals(c.vocabSize(), config.get("vocab_size").getAsInt());
      assertEquals(c.hiddenSize(), config.get("hidden_size").getAsInt());
      assertEquals(c.intermediateSize(), config.get("intermediate_size").getAsInt());
      assertEquals(c.numLayers(), config.get("num_hidden_layers").getAsInt());
      assertEquals(c.memLayers().get(0), config.getAsJsonArray("mem_layers").get(0).getAsInt());
      assertEquals("LongLlamaForCausalLM", config.getAsJsonArray("architectures").get(0).getAsString());
      // the reference's tensor names and shapes: q/k/v and gate/up split again
      Checkpoint ck = Checkpoint.open(out);
      assertEquals(2 + 1 + 9 * c.numLayers(), ck.tensors().size());
      assertEquals(List.of(16L, 16L), List.of(ck.tensor("model.layers.1.self_attn.k_proj.weight").shape()[0],
          ck.tensor("model.layers.1.self_attn.k_proj.weight").shape()[1]));
      assertEquals(32L, ck.tensor("model.layers.0.mlp.up_proj.weight").shape()[0]);
      // bfloat16 output loads too, with logits close to the float32 ones
      Path bf16 = tmp.resolve("bf16");
      TrainingCheckpoint.export(model, null, StorageType.BF16, bf16);
      try (LongLlama loaded = LongLlama.load(Checkpoint.open(bf16), Device.cpu());
          LongLlamaCache cache = loaded.newCache(2); NDManager m = loaded.manager().newSubManager()) {
        float[] back = Tiny.floats(loaded.forward(cache, ids, null, false, 10, LongLlama.Output.ALL_LOGITS, m));
        assertTrue(Tiny.maxAbsDiff(trained, back) < 0.05, "bf16 logits differ by " + Tiny.maxAbsDiff(trained, back));
      }
    }
  }

  @Test
  void newModelsGetMemoryLayersInTheThreeBillionModelsProportion() {
    assertEquals(List.of(6, 12, 18), HfConfig.defaultMemLayers(26));
    assertEquals(List.of(2), HfConfig.defaultMemLayers(4));
    assertEquals(List.of(4, 11), HfConfig.defaultMemLayers(16));
    assertEquals(List.of(0), HfConfig.defaultMemLayers(1));
    assertEquals(List.of(2), HfConfig.newModel(64, 16, 2, 32, 4, 32, null).memLayers());
  }

  @Test
  void aResumedRunEndsWhereAnUninterruptedOneDoes() throws Exception {
    TrainOptions o = options(6, 5e-3);
    Path ck = tmp.resolve("checkpoint");
    float[] straight;
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 4)) {
      Trainer t = new Trainer(model, o);
      t.run(data(), List.of(), null);
      straight = weights(model);
    }
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 4)) {
      TrainOptions first = new TrainOptions(6, 4, 12, 2, 1, 3, 0.5, true, 5e-3, 2, 0.1, 0.01, 1.0, 5, 0, 0, 3, 1000,
          StorageType.F32);
      Trainer t = new Trainer(model, first);
      // stop at the first checkpoint, as a killed run would
      try {
        t.run(data(), List.of(), tr -> {
          TrainingCheckpoint.save(tr, null, ck);
          throw new java.io.IOException("stop");
        });
      } catch (java.io.IOException stop) {
        assertEquals("stop", stop.getMessage());
      }
    }
    assertEquals(3, TrainingCheckpoint.step(ck));
    try (LongLlama model = TrainingCheckpoint.loadTrainable(ck, Device.cpu(), DataType.FLOAT32)) {
      Trainer t = new Trainer(model, o);
      TrainingCheckpoint.restore(t, ck);
      t.run(data(), List.of(), null);
      float[] resumed = weights(model);
      assertTrue(Tiny.maxAbsDiff(straight, resumed) < 1e-6, "resumed run differs by " + Tiny.maxAbsDiff(straight, resumed));
    }
    // without the optimizer state the run would differ (the check above can fail)
    try (LongLlama model = TrainingCheckpoint.loadTrainable(ck, Device.cpu(), DataType.FLOAT32)) {
      Trainer t = new Trainer(model, o);
      t.restore(3, zeros(t));
      t.run(data(), List.of(), null);
      assertTrue(Tiny.maxAbsDiff(straight, weights(model)) > 1e-5);
    }
  }

  private static Map<String, float[]> zeros(Trainer t) {
    Map<String, float[]> z = new java.util.HashMap<>();
    t.optimizer().state().forEach((k, a) -> z.put(k, new float[(int) a.size()]));
    return z;
  }

  /** A fresh, seeded stream of batches (the same on every call). */
  private static java.util.function.Supplier<Batch> data() {
    int[] n = {0};
    return () -> Tiny.batch(Tiny.ids(4, 12, 100 + n[0]++));
  }

  private static float[] weights(LongLlama model) {
    NDArray qkv = model.parameters().get("model.layers.1.self_attn.qkv_proj.weight");
    NDArray head = model.parameters().get("lm_head.weight");
    float[] a = Tiny.floats(qkv);
    float[] b = Tiny.floats(head);
    float[] all = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, all, a.length, b.length);
    return all;
  }
}
