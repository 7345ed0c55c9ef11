package io.longmem.train;

import io.longmem.io.InputException;
import io.longmem.model.checkpoint.StorageType;

/**
 * What a training run does. Cross-batch range {@code crossBatch} (FoT's d) until step
 * {@code lateFrom * steps}, then {@code crossBatchLate}; learning rate: linear warmup over
 * {@code warmup} steps to {@code lr}, then cosine decay to {@code lr * minLrRatio} at the last step.
 */
public record TrainOptions(int steps, int batch, int length, int k, int crossBatch, int crossBatchLate,
    double lateFrom, boolean stepping, double lr, int warmup, double minLrRatio, double weightDecay, double clip,
    long seed, int evalEvery, int evalBatches, int checkpointEvery, int logEvery, StorageType outputType) {

  /** A small run's defaults (the command line starts from these). */
  public static TrainOptions defaults() {
    return new TrainOptions(1000, 8, 256, 2, 2, 8, 0.9, true, 1e-3, 50, 0.1, 0.01, 1.0, 1, 100, 2, 200, 10,
        StorageType.BF16);
  }

  public TrainOptions {
    positive("--steps", steps);
    positive("--batch", batch);
    positive("--k", k);
    if (batch % k != 0) {
      throw new InputException("--batch " + batch + " must be a multiple of --k " + k);
    }
    if (length < 2) {
      throw new InputException("--length must be >= 2, got " + length);
    }
    if (crossBatch < 0 || crossBatchLate < 0) {
      throw new InputException("--cross-batch and --cross-batch-late must be >= 0");
    }
    if (!(lateFrom >= 0 && lateFrom <= 1)) {
      throw new InputException("--late-from must be a fraction in [0, 1], got " + lateFrom);
    }
    if (!(lr > 0 && Double.isFinite(lr))) {
      throw new InputException("--lr must be a positive number, got " + lr);
    }
    if (warmup < 0) {
      throw new InputException("--warmup must be >= 0, got " + warmup);
    }
    if (!(minLrRatio >= 0 && minLrRatio <= 1)) {
      throw new InputException("--min-lr-ratio must be in [0, 1], got " + minLrRatio);
    }
    if (!(weightDecay >= 0 && Double.isFinite(weightDecay))) {
      throw new InputException("--weight-decay must be >= 0, got " + weightDecay);
    }
    if (!(clip >= 0 && Double.isFinite(clip))) {
      throw new InputException("--clip must be >= 0 (0: off), got " + clip);
    }
    if (evalEvery < 0 || evalBatches < 0 || checkpointEvery < 0 || logEvery < 1) {
      throw new InputException("--eval-every, --eval-batches and --checkpoint-every must be >= 0, --log-every >= 1");
    }
    if (outputType != StorageType.BF16 && outputType != StorageType.F32) {
      throw new InputException("--dtype must be bfloat16 or float32");
    }
  }

  private static void positive(String name, int v) {
    if (v < 1) {
      throw new InputException(name + " must be >= 1, got " + v);
    }
  }

  /** The cross-batch range at a (1-based) step. */
  public int crossBatchAt(long step) {
    return step > (long) Math.floor(lateFrom * steps) ? crossBatchLate : crossBatch;
  }

  /** The learning rate at a (1-based) step. */
  public double lrAt(long step) {
    if (step <= warmup) {
      return lr * step / Math.max(1, warmup);
    }
    double progress = Math.min(1.0, (step - warmup) / (double) Math.max(1, steps - warmup));
    double min = lr * minLrRatio;
    return min + (lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}
