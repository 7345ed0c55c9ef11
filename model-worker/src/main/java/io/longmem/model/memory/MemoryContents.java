package io.longmem.model.memory;

/**
 * A memory in this process that can hand back what it holds: a batch row's first {@code tokens}
 * remembered pairs of a layer, head-major [H, tokens, D] as a {@code MemoryBlock} holds them. The
 * encode job reads documents into such a memory and stores this.
 */
public interface MemoryContents {
  float[] keys(int layer, int row, int tokens);

  float[] values(int layer, int row, int tokens);
}
