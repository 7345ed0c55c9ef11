package io.longmem.model.memory;

import ai.djl.ndarray.NDArray;

/** A memory that passes every call to another; decorators (timing, capturing) override what they watch. */
public abstract class ForwardingMemory implements Memory {
  protected final Memory inner;

  protected ForwardingMemory(Memory inner) {
    this.inner = inner;
  }

  @Override
  public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
    inner.append(layer, keys, values, mask);
  }

  @Override
  public Retrieved retrieve(int layer, NDArray queries) {
    return inner.retrieve(layer, queries);
  }

  @Override
  public long size(int layer) {
    return inner.size(layer);
  }

  @Override
  public int pairsPerQuery() {
    return inner.pairsPerQuery();
  }

  @Override
  public void close() {
    inner.close();
  }
}
