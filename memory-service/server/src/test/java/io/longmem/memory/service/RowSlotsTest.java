package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** {@link RowSlots} against a HashMap: puts, overwrites, misses and clears over many rounds. */
class RowSlotsTest {
  @Test
  void actsLikeAMapThatIsClearedBetweenHeads() {
    Random r = new Random(7);
    for (int capacity : new int[] {1, 3, 4, 5, 64, 1000}) {
      RowSlots slots = new RowSlots(capacity);
      for (int round = 0; round < 20; round++) {
        Map<Long, Integer> expected = new HashMap<>();
        // rows from a small range (collisions, overwrites) or anywhere below 2^40 (any shard)
        boolean dense = round % 2 == 0;
        while (expected.size() < capacity) {
          long row = dense ? r.nextInt(capacity * 3) : (r.nextLong() >>> 24);
          int slot = r.nextInt(1 << 20);
          slots.put(row, slot);
          expected.put(row, slot);
          long probe = dense ? r.nextInt(capacity * 3) : (r.nextLong() >>> 24);
          assertEquals(expected.getOrDefault(probe, -1), slots.get(probe), "capacity " + capacity + " row " + probe);
        }
        for (Map.Entry<Long, Integer> e : expected.entrySet()) {
          assertEquals(e.getValue(), slots.get(e.getKey()));
        }
        slots.clear();
        for (Long row : expected.keySet()) {
          assertEquals(-1, slots.get(row), "cleared");
        }
      }
    }
  }

  @Test
  void rowZeroAndLargeRowsAreKeys() {
    RowSlots slots = new RowSlots(4);
    assertEquals(-1, slots.get(0));
    slots.put(0, 5);
    slots.put((1L << 40) - 1, 6);
    slots.put(3L << 40 | 17, 7); // shard 3, row 17, as Candidates packs them
    assertEquals(5, slots.get(0));
    assertEquals(6, slots.get((1L << 40) - 1));
    assertEquals(7, slots.get(3L << 40 | 17));
    assertEquals(-1, slots.get(17));
    slots.put(0, 9);
    assertEquals(9, slots.get(0));
  }
}
