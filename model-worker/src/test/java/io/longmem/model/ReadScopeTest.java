package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.Fixtures;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.ForwardingMemory;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Reading a long input window by window holds a bounded number of native arrays: each window's
 * temporaries are freed when it ends, whatever the output. Counted while reading (at each memory
 * append), on the model's manager tree, which owns every array the forward pass creates.
 */
class ReadScopeTest {
  /** Counts the live native arrays of a manager at each append of the first memory layer. */
  static final class Counting extends ForwardingMemory {
    final NDManager watched;
    final int layer;
    final List<Integer> live = new ArrayList<>();

    Counting(DenseMemory inner, NDManager watched, int layer) {
      super(inner);
      this.watched = watched;
      this.layer = layer;
    }

    @Override
    public void append(int l, NDArray keys, NDArray values, NDArray mask) {
      super.append(l, keys, values, mask);
      if (l == layer) {
        live.add(watched.getManagedArrays().size());
      }
    }
  }

  @ParameterizedTest
  @EnumSource(LongLlama.Output.class)
  void liveArraysStayFlatAcrossWindows(LongLlama.Output output) throws Exception {
    Checkpoint ckpt = Checkpoint.open(Fixtures.tinyA().resolve("model"));
    int windows = 24;
    try (LongLlama model = LongLlama.load(ckpt, Device.cpu()); NDManager out = NDManager.newBaseManager()) {
      int window = model.config().maxPositionEmbeddings();
      long[] ids = new SplittableRandom(7).ints(windows * window, 3, model.config().vocabSize())
          .asLongStream().toArray();
      Counting memory = new Counting(new DenseMemory(model.manager()), model.manager(), model.config().memLayers().get(0));
      try (LongLlamaCache cache = model.newCache(1, memory)) {
        NDArray logits = model.forward(cache, new long[][] {ids}, null, false, 0, output, out);
        if (logits != null) {
          logits.close();
        }
      }
      assertEquals(windows, memory.live.size(), "one append per window");
      // after a few windows (memory and cache allocated) the count must not grow with the windows read;
      // ALL_LOGITS keeps each window's logits (the caller's answer): one array per window
      int perWindow = output == LongLlama.Output.ALL_LOGITS ? 1 : 0;
      int early = memory.live.get(3);
      int late = memory.live.get(windows - 1);
      assertTrue(late - early <= perWindow * (windows - 4),
          output + ": live native arrays grew from " + early + " (window 4) to " + late + " (window " + windows
              + "): " + memory.live);
    }
  }
}
