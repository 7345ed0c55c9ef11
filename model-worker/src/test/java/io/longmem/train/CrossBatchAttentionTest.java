package io.longmem.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import io.longmem.model.CrossBatch;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** FoT's cross-batch attention in the training forward pass. */
class CrossBatchAttentionTest {

  private static float[] logits(LongLlama model, long[][] ids, CrossBatch cb) {
    try (NDManager m = model.manager().newSubManager()) {
      NDArray hidden = model.trainingForward(m.create(ids), cb);
      return Tiny.floats(model.logits(hidden));
    }
  }

  /** Entry b's logits [L, vocab] out of the flat [B, L, vocab] array. */
  private static float[] entry(float[] all, int b, int length, int fromT, int toT) {
    int row = length * Tiny.VOCAB;
    return Arrays.copyOfRange(all, b * row + fromT * Tiny.VOCAB, b * row + toT * Tiny.VOCAB);
  }

  @Test
  void rangeZeroIsOrdinaryAttention() {
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 7)) {
      long[][] ids = Tiny.ids(4, 12, 1);
      float[] training = logits(model, ids, CrossBatch.of(4, 0, 1, false));
      float[] inference;
      try (LongLlamaCache cache = model.newCache(4); NDManager out = model.manager().newSubManager()) {
        inference = Tiny.floats(model.forward(cache, ids, null, false, 12, LongLlama.Output.ALL_LOGITS, out));
      }
      assertEquals(inference.length, training.length);
      assertTrue(Tiny.maxAbsDiff(inference, training) < 1e-5, "range 0 differs from the forward pass");
      // and a real range changes what the entries after the first compute (else the above proves nothing)
      float[] crossed = logits(model, ids, CrossBatch.of(4, 2, 1, false));
      assertTrue(Tiny.maxAbsDiff(entry(crossed, 0, 12, 0, 12), entry(training, 0, 12, 0, 12)) < 1e-5,
          "the first entry has nothing before it to see");
      assertTrue(Tiny.maxAbsDiff(entry(crossed, 2, 12, 0, 12), entry(training, 2, 12, 0, 12)) > 1e-4,
          "cross-batch did not change entry 2");
    }
  }

  @Test
  void aPrivateDocumentIsSeenByItsOwnEntriesOnly() {
    int length = 10;
    // two documents of two entries each, every entry sees all before it
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 5)) {
      CrossBatch open = CrossBatch.of(4, 3, 2, false);
      CrossBatch hiding = open.hiding(new boolean[] {true, true, false, false}); // document 0 is private
      long[][] ids = Tiny.ids(4, length, 9);
      long[][] changed = Tiny.ids(4, length, 9);
      for (int p = 0; p < length; p++) {
        changed[0][p] = (changed[0][p] + 11) % Tiny.VOCAB; // document 0's first entry
      }
      float[] before = logits(model, ids, hiding);
      float[] after = logits(model, changed, hiding);
      assertTrue(Tiny.maxAbsDiff(entry(before, 1, length, 0, length), entry(after, 1, length, 0, length)) > 1e-4,
          "document 0's second entry no longer sees its first");
      for (int b = 2; b < 4; b++) {
        assertArrayEquals(entry(before, b, length, 0, length), entry(after, b, length, 0, length), 1e-6f,
            "entry " + b + " of document 1 saw the private document 0");
      }
      // without the flags document 1 sees it (else the above proves nothing)
      assertTrue(Tiny.maxAbsDiff(entry(logits(model, ids, open), 2, length, 0, length),
          entry(logits(model, changed, open), 2, length, 0, length)) > 1e-4, "document 1 never saw document 0");
    }
  }

  @Test
  void noQuerySeesALaterEntryOrPosition() {
    int batch = 4;
    int length = 10;
    try (LongLlama model = Tiny.model(DataType.FLOAT32, 3)) {
      CrossBatch cb = CrossBatch.of(batch, 3, 1, false);
      long[][] ids = Tiny.ids(batch, length, 2);
      float[] base = logits(model, ids, cb);
      for (int j = 0; j < batch; j++) {
        int t = 4;
        long[][] changed = Tiny.ids(batch, length, 2);
        for (int b = j + 1; b < batch; b++) {
          for (int p = 0; p < length; p++) {
            changed[b][p] = (changed[b][p] + 17) % Tiny.VOCAB;
          }
        }
        for (int p = t; p < length; p++) {
          changed[j][p] = (changed[j][p] + 5) % Tiny.VOCAB;
        }
        float[] after = logits(model, changed, cb);
        for (int b = 0; b < j; b++) {
          assertArrayEquals(entry(base, b, length, 0, length), entry(after, b, length, 0, length), 1e-6f,
              "entry " + b + " saw a later entry");
        }
        assertArrayEquals(entry(base, j, length, 0, t), entry(after, j, length, 0, t), 1e-6f,
            "entry " + j + " saw a later position");
        assertTrue(Tiny.maxAbsDiff(entry(base, j, length, t, length), entry(after, j, length, t, length)) > 1e-4,
            "the perturbation changed nothing at all");
      }
      // an earlier entry is seen: changing entry 0 changes entry 1 everywhere
      long[][] first = Tiny.ids(batch, length, 2);
      first[0][length - 1] = (first[0][length - 1] + 9) % Tiny.VOCAB;
      float[] after = logits(model, first, cb);
      assertTrue(Tiny.maxAbsDiff(entry(base, 1, length, 0, 1), entry(after, 1, length, 0, 1)) > 1e-5,
          "entry 1's first query did not see entry 0's last token");
    }
  }

  @Test
  void steppingGivesThePapersMix() {
    // the 3B mix: range 3, 4 entries per document -> entries see 0, 2, 3, 3 others: (positives, negatives) = (0,0), (1,1), (2,1), (3,0)
    CrossBatch cb = CrossBatch.of(8, 3, 4, true);
    int[] sees = new int[8];
    for (int b = 0; b < 8; b++) {
      sees[b] = cb.sees(b);
    }
    assertArrayEquals(new int[] {0, 1, 2, 3, 0, 2, 3, 3}, sees); // the first document: never more than the entries before
    // the published README's example: batch 8, range 6, k 4
    CrossBatch readme = CrossBatch.of(8, 6, 4, true);
    int[] expected = {0, 1, 2, 3, 0, 3, 6, 6};
    for (int b = 0; b < 8; b++) {
      assertEquals(expected[b], readme.sees(b), "entry " + b);
    }
  }

  @Test
  void gradientMatchesFiniteDifferences() {
    try (LongLlama model = Tiny.model(DataType.FLOAT64, 11)) {
      Batch batch = Tiny.batch(Tiny.ids(4, 8, 5));
      CrossBatch cb = CrossBatch.of(4, 2, 2, true);
      Map<String, NDArray> params = model.parameters();
      String[] names = {"model.layers.1.self_attn.qkv_proj.weight", "model.layers.1.self_attn.o_proj.weight",
          "model.layers.0.mlp.gate_up_proj.weight", "model.layers.2.input_layernorm.weight",
          "model.embed_tokens.weight", "lm_head.weight"};
      double[][] analytic = new double[names.length][];
      int[][] at = new int[names.length][];
      try (NDManager m = model.manager().newSubManager()) {
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
          gc.backward(Trainer.loss(model, batch, cb));
        }
        java.util.Random r = new java.util.Random(1);
        for (int i = 0; i < names.length; i++) {
          NDArray p = params.get(names[i]);
          double[] g = p.getGradient().toDoubleArray();
          at[i] = new int[4];
          analytic[i] = new double[4];
          for (int j = 0; j < 4; j++) {
            // embeddings: a row the batch uses, else the gradient is 0 and proves nothing
            int e = names[i].contains("embed") ? (int) batch.ids()[j][0] * 16 + r.nextInt(16) : r.nextInt(g.length);
            at[i][j] = e;
            analytic[i][j] = g[e];
          }
        }
      }
      double eps = 1e-6;
      for (int i = 0; i < names.length; i++) {
        NDArray p = params.get(names[i]);
        long cols = p.getShape().dimension() == 2 ? p.getShape().get(1) : 1;
        for (int j = 0; j < 4; j++) {
          NDIndex idx = p.getShape().dimension() == 2 ? new NDIndex(at[i][j] / cols, at[i][j] % cols)
              : new NDIndex(at[i][j]);
          double v = p.get(idx).getDouble();
          p.set(idx, v + eps);
          double plus = lossValue(model, batch, cb);
          p.set(idx, v - eps);
          double minus = lossValue(model, batch, cb);
          p.set(idx, v);
          double numeric = (plus - minus) / (2 * eps);
          double g = analytic[i][j];
          assertTrue(Math.abs(numeric - g) <= 1e-7 + 1e-5 * Math.abs(g),
              names[i] + "[" + at[i][j] + "]: autograd " + g + ", finite differences " + numeric);
          assertTrue(Math.abs(g) > 1e-9, names[i] + "[" + at[i][j] + "] has no gradient");
        }
      }
    }
  }

  private static double lossValue(LongLlama model, Batch batch, CrossBatch cb) {
    try (NDManager m = model.manager().newSubManager(); ai.djl.ndarray.NDScope s = new ai.djl.ndarray.NDScope()) {
      s.suppressNotUsedWarning();
      return Trainer.loss(model, batch, cb).getDouble();
    }
  }
}
