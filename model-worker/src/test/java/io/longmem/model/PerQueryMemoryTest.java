package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.longmem.Fixtures;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.ForwardingMemory;
import io.longmem.io.Npy;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * A memory answering per query (as kNN backends do) with every pair it holds gives the reference's
 * logits, also when the model asks it one query at a time (the blocks that bound a kNN answer).
 */
class PerQueryMemoryTest {
  /** Dense memory seen through the per-query interface: each query gets all M pairs. */
  static final class EveryPairPerQuery extends ForwardingMemory {
    final DenseMemory dense;
    int calls;

    EveryPairPerQuery(DenseMemory dense) {
      super(dense);
      this.dense = dense;
    }

    @Override
    public Retrieved retrieve(int layer, NDArray queries) {
      calls++;
      NDArray[] c = dense.contents(layer); // [B,H,M,D], [B,H,M,D], [B,M]
      long[] k = c[0].getShape().getShape();
      long q = queries.getShape().get(2);
      Shape shape = new Shape(k[0], k[1], q, k[2], k[3]);
      return new Retrieved(c[0].expandDims(2).broadcast(shape), c[1].expandDims(2).broadcast(shape),
          c[2].reshape(k[0], 1, 1, k[2]).duplicate());
    }

    @Override
    public int pairsPerQuery() {
      return (int) Math.max(1, dense.size(1));
    }
  }

  @Test
  void perQueryAnswersInBlocksGiveTheReferenceLogits() throws Exception {
    Path tiny = Fixtures.tinyA();
    var cases = Fixtures.json(tiny.resolve("cases.json"));
    long[] prompt = Fixtures.concat(Fixtures.ids(cases, "book_ids"), Fixtures.ids(cases, "question_ids"));
    Npy.Array want = Npy.read(tiny.resolve("f32_prompt_logits_cached.npy"));
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    for (long budget : new long[] {0, 1}) {
      try (LongLlama model = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu());
           NDManager m = NDManager.newBaseManager()) {
        if (budget > 0) {
          model.retrieveBudget(budget);
        }
        EveryPairPerQuery memory = new EveryPairPerQuery(new DenseMemory(model.manager()));
        float[] got;
        try (LongLlamaCache cache = model.newCache(1, memory)) {
          got = model.forward(cache, new long[][] {prompt}, null, true, 20, LongLlama.Output.ALL_LOGITS, m)
              .toFloatArray();
        }
        double worst = 0;
        for (int i = 0; i < got.length; i++) {
          worst = Math.max(worst, Math.abs(got[i] - want.data()[i]));
        }
        assertTrue(worst < 1e-4, (budget == 0 ? "default budget" : "budget " + budget) + ": logits differ by " + worst);
        // 3 windows after the first read memory, plus the question: per layer, one call each, or one per query
        int perLayerCalls = memory.calls / 2;
        assertTrue(budget == 1 ? perLayerCalls == 3 * 32 + 20 : perLayerCalls == 4,
            "budget " + budget + ": " + memory.calls + " memory calls");
      }
    }
  }
}
