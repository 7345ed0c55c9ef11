package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.memory.ReadMemory;
import io.longmem.train.HfConfig;
import io.longmem.train.Init;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** A model with one memory layer reads all windows as one batch: the pairs the window-by-window loop reads. */
class BatchedReadTest {
  @Test
  void batchedWindowsRememberWhatTheLoopRemembers() {
    // window 8; rows of 37 and 21 real tokens: full windows, a partial last window, padding
    var config = HfConfig.newModel(64, 16, 2, 32, 3, 8, List.of(2));
    try (LongLlama model = Init.fresh(config, NDManager.newBaseManager(Device.cpu()), DataType.FLOAT32, 3, 0.3)) {
      Random r = new Random(5);
      long[][] ids = new long[2][37];
      float[][] padding = new float[2][37];
      for (int b = 0; b < 2; b++) {
        int n = b == 0 ? 37 : 21;
        for (int t = 0; t < n; t++) {
          ids[b][t] = r.nextInt(64);
          padding[b][t] = 1;
        }
      }
      List<List<MemoryBlock>> batched = model.read(ids, padding, false);
      List<List<MemoryBlock>> loop = model.readInOrder(ids, padding, false, ReadMemory.DENSE);
      for (int b = 0; b < 2; b++) {
        assertEquals(1, batched.get(b).size());
        MemoryBlock x = batched.get(b).get(0);
        MemoryBlock y = loop.get(b).get(0);
        assertEquals(y.layer(), x.layer());
        assertArrayEquals(y.positions(), x.positions());
        assertEquals(y.keys().length, x.keys().length);
        assertArrayEquals(y.keys(), x.keys(), 1e-5f);
        assertArrayEquals(y.values(), x.values(), 1e-5f);
      }
    }
  }
}
