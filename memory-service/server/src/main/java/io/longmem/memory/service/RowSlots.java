package io.longmem.memory.service;

import java.util.Arrays;

/**
 * Row -> slot for the rows one head's answer holds: an open-addressing table sized by the answer
 * (queries x k), not by the shard, so a search costs the same on a shard of any size. Rows are
 * non-negative; {@link #clear} forgets only the entries used, so one table serves every head.
 */
final class RowSlots {
  private final long[] rows;
  private final int[] slots;
  private final int mask;
  private final int[] used;
  private int count;

  /** @param capacity the most distinct rows put between two clears */
  RowSlots(int capacity) {
    int size = Integer.highestOneBit(Math.max(4, capacity) * 2 - 1) << 1;
    rows = new long[size];
    slots = new int[size];
    used = new int[Math.max(4, capacity)];
    mask = size - 1;
    Arrays.fill(rows, -1);
  }

  private int find(long row) {
    int i = (int) (row * 0x9E3779B97F4A7C15L >>> 40) & mask;
    while (rows[i] != -1 && rows[i] != row) {
      i = (i + 1) & mask;
    }
    return i;
  }

  /** The slot of a row, or -1. */
  int get(long row) {
    int i = find(row);
    return rows[i] == row ? slots[i] : -1;
  }

  void put(long row, int slot) {
    int i = find(row);
    if (rows[i] != row) {
      rows[i] = row;
      used[count++] = i;
    }
    slots[i] = slot;
  }

  void clear() {
    for (int j = 0; j < count; j++) {
      rows[used[j]] = -1;
    }
    count = 0;
  }
}
