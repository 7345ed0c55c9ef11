package io.longmem.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.longmem.model.CrossBatch;
import io.longmem.model.LongLlama;
import java.util.List;
import java.util.Locale;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The FoT training loop on DJL's autograd: per step a batch, the training forward pass with the
 * step's cross-batch, cross-entropy on the batch's chosen positions, backward, AdamW; progress
 * (step, loss, tokens/s, ETA) every few steps, an evaluation every N steps, checkpoints with the
 * optimizer's state. The model's parameters must require gradients ({@link Init}).
 */
public final class Trainer {
  private static final Logger LOG = LoggerFactory.getLogger(Trainer.class);

  /** What a finished run reports. */
  public record Result(long steps, double firstLoss, double lastLoss, double evalLoss, double evalAccuracy,
      double tokensPerSecond, double seconds) {}

  /** An evaluation: mean loss and the share of target tokens the model ranks first. */
  public record Eval(double loss, double accuracy) {}

  /** Called with the trainer at every checkpoint step (the command writes the checkpoint). */
  public interface Checkpointer {
    void save(Trainer trainer) throws java.io.IOException;
  }

  private final LongLlama model;
  private final TrainOptions options;
  private final AdamW optimizer;
  private long step;

  public Trainer(LongLlama model, TrainOptions options) {
    this.model = model;
    this.options = options;
    this.optimizer = new AdamW(model.parameters(), model.manager(), 0.9, 0.95, 1e-8, options.weightDecay(),
        options.clip());
  }

  public LongLlama model() {
    return model;
  }

  public TrainOptions options() {
    return options;
  }

  public AdamW optimizer() {
    return optimizer;
  }

  /** Steps done so far (restored by a resume). */
  public long step() {
    return step;
  }

  /** Continues from a checkpoint: its step count and optimizer moments. */
  public void restore(long steps, java.util.Map<String, float[]> optimizerState) {
    optimizer.restore(optimizerState, steps);
    this.step = steps;
  }

  /**
   * Trains until {@code options.steps()}. A resumed run first draws (and drops) the batches the
   * steps before it used, so it sees what an uninterrupted run would have seen.
   */
  public Result run(Supplier<Batch> data, List<Batch> eval, Checkpointer checkpointer) throws java.io.IOException {
    return run(data, eval, java.util.Map.of(), checkpointer);
  }

  /**
   * As {@link #run(Supplier, List, Checkpointer)}, also evaluating {@code more} (named sets, logged
   * beside the main one; the result reports the main one).
   */
  public Result run(Supplier<Batch> data, List<Batch> eval, java.util.Map<String, List<Batch>> more,
      Checkpointer checkpointer) throws java.io.IOException {
    for (long s = 0; s < step; s++) {
      data.get();
    }
    long start = step;
    long t0 = System.nanoTime();
    long tokens = 0;
    long trainNanos = 0;
    double first = Double.NaN;
    double last = Double.NaN;
    double windowLoss = 0;
    int windowSteps = 0;
    Eval lastEval = new Eval(Double.NaN, Double.NaN);
    while (step < options.steps()) {
      Batch b = data.get();
      long s = step + 1;
      CrossBatch cb = CrossBatch.of(b.size(), options.crossBatchAt(s), options.k(), options.stepping())
          .hiding(b.privateEntries());
      double lr = options.lrAt(s);
      long s0 = System.nanoTime();
      double loss = step(b, cb, lr);
      trainNanos += System.nanoTime() - s0;
      step = s;
      tokens += b.tokens();
      first = Double.isNaN(first) ? loss : first;
      last = loss;
      windowLoss += loss;
      windowSteps++;
      double seconds = (System.nanoTime() - t0) / 1e9;
      if (step % options.logEvery() == 0 || step == options.steps()) {
        double rate = tokens / Math.max(trainNanos / 1e9, 1e-9); // training steps only, not evaluations or checkpoints
        double eta = (options.steps() - step) * seconds / Math.max(1, step - start);
        LOG.info(String.format(Locale.ROOT, "step %d/%d loss %.4f lr %.2e cross-batch %d tokens/s %.0f ETA %s",
            step, options.steps(), windowLoss / windowSteps, lr, cb.range(), rate, duration(eta)));
        windowLoss = 0;
        windowSteps = 0;
      }
      if (!eval.isEmpty() && options.evalEvery() > 0 && (step % options.evalEvery() == 0 || step == options.steps())) {
        lastEval = evaluate(eval);
        LOG.info(String.format(Locale.ROOT, "eval at step %d: loss %.4f, target tokens ranked first %.1f%%", step,
            lastEval.loss(), 100 * lastEval.accuracy()));
        for (var e : more.entrySet()) {
          Eval x = evaluate(e.getValue());
          LOG.info(String.format(Locale.ROOT, "eval at step %d, %s: loss %.4f, target tokens ranked first %.1f%%", step,
              e.getKey(), x.loss(), 100 * x.accuracy()));
        }
      }
      if (checkpointer != null && options.checkpointEvery() > 0 && step % options.checkpointEvery() == 0
          && step < options.steps()) {
        checkpointer.save(this);
      }
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    return new Result(step, first, last, lastEval.loss(), lastEval.accuracy(), tokens / Math.max(trainNanos / 1e9, 1e-9),
        seconds);
  }

  /** One optimisation step; returns the batch's loss before the update. */
  public double step(Batch b, CrossBatch cb, double lr) {
    try (NDScope scope = new NDScope()) {
      scope.suppressNotUsedWarning();
      double value;
      try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
        NDArray loss = loss(model, b, cb);
        value = loss.toType(DataType.FLOAT64, false).getDouble();
        gc.backward(loss);
      }
      optimizer.step(model.parameters(), lr);
      return value;
    }
  }

  /** Mean loss and top-1 accuracy over batches, without gradients, with the final cross-batch range. */
  public Eval evaluate(List<Batch> batches) {
    double loss = 0;
    long right = 0;
    long total = 0;
    for (Batch b : batches) {
      try (NDScope scope = new NDScope()) {
        scope.suppressNotUsedWarning();
        CrossBatch cb = CrossBatch.of(b.size(), options.crossBatchLate(), options.k(), options.stepping())
            .hiding(b.privateEntries());
        NDArray logits = chosenLogits(model, b, cb);
        NDArray targets = owned(model.manager().create(b.targets()));
        loss += crossEntropy(logits, targets).getFloat();
        right += logits.argMax(1).eq(targets).sum().toType(DataType.INT64, false).getLong();
        total += b.targets().length;
      }
    }
    return new Eval(loss / Math.max(1, batches.size()), right / (double) Math.max(1, total));
  }

  /**
   * Mean cross-entropy of the batch's targets at its chosen positions: only those positions go
   * through the vocabulary projection (most of a small model's cost).
   */
  public static NDArray loss(LongLlama model, Batch b, CrossBatch cb) {
    NDArray logits = chosenLogits(model, b, cb);
    return crossEntropy(logits, owned(model.manager().create(b.targets())));
  }

  /** Logits [N, vocab] at the batch's chosen positions. */
  public static NDArray chosenLogits(LongLlama model, Batch b, CrossBatch cb) {
    NDManager m = model.manager();
    NDArray ids = owned(m.create(b.ids()));
    NDArray hidden = model.trainingForward(ids, cb);
    long hiddenSize = hidden.getShape().get(2);
    NDArray flat = hidden.reshape(new Shape((long) b.size() * b.length(), hiddenSize));
    NDArray chosen = flat.get(new NDIndex("{}", owned(m.create(b.positions())).toType(DataType.INT64, false)));
    return model.logits(chosen);
  }

  /**
   * A copy that libtorch owns. DJL wraps a Java array in a direct buffer that only the wrapper
   * keeps reachable, but autograd keeps these tensors (ids, indices, targets) until backward: a
   * collected buffer would be read after it is freed.
   */
  private static NDArray owned(NDArray wrapped) {
    NDArray copy = wrapped.duplicate();
    wrapped.close();
    return copy;
  }

  private static NDArray crossEntropy(NDArray logits, NDArray targets) {
    NDArray logp = logits.logSoftmax(-1);
    return logp.gather(targets.reshape(targets.size(), 1), 1).mean().neg();
  }

  private static String duration(double seconds) {
    long s = Math.round(seconds);
    return String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  }
}
