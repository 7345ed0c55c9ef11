package io.longmem.cli;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.StorageType;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.train.Batch;
import io.longmem.train.Doc;
import io.longmem.train.HfConfig;
import io.longmem.train.Init;
import io.longmem.train.KPacking;
import io.longmem.train.PasskeyTask;
import io.longmem.train.RecallTask;
import io.longmem.train.TrainOptions;
import io.longmem.train.Trainer;
import io.longmem.train.TrainingCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true,
    description = "Trains a LongLLaMA with FoT (cross-batch attention in memory layers), from scratch or from a "
        + "checkpoint, on a corpus and/or the synthetic passkey task; writes OUT/model (a Hugging Face LongLLaMA "
        + "directory) and OUT/checkpoint (resumable: --resume OUT/checkpoint).")
final class TrainCommand implements Callable<Integer> {
  @Option(names = "--out", required = true, paramLabel = "DIR", description = "where model/ and checkpoint/ go")
  Path out;

  @Option(names = "--init", paramLabel = "DIR", description = "continue training this checkpoint (else a new model)")
  Path init;

  @Option(names = "--resume", paramLabel = "DIR", description = "a checkpoint written by train (OUT/checkpoint)")
  Path resume;

  @Option(names = "--tokenizer", paramLabel = "FILE", description = "tokenizer.model (default: the checkpoint's)")
  Path tokenizerFile;

  @Option(names = "--data", paramLabel = "PATH", description = "a corpus as the encode job reads it (text dir, JSONL, Parquet)")
  String data;

  @Option(names = "--format", defaultValue = "auto", paramLabel = "text|jsonl|parquet|auto") String format;

  @Option(names = "--task", defaultValue = "passkey", paramLabel = "passkey|none",
      description = "the built-in synthetic task mixed in (default: ${DEFAULT-VALUE})") String task;

  @Option(names = "--passkey-share", defaultValue = "0.5", paramLabel = "F",
      description = "share of documents that are passkey prompts when --data is given too") double passkeyShare;
  @Option(names = "--passkey-context-loss", defaultValue = "0", paramLabel = "F",
      description = "share of a passkey prompt's other positions (filler, key line) in the loss too; "
          + "evaluation counts the answer only, of prompts whose key only memory reaches (default: ${DEFAULT-VALUE})")
  double passkeyContextLoss;
  @Option(names = "--passkey-tail", defaultValue = "0", paramLabel = "N",
      description = "up to N filler tokens after a passkey prompt's answer, so the question sits anywhere in its "
          + "window (default: ${DEFAULT-VALUE}, the question ends the prompt)") int passkeyTail;
  @Option(names = "--passkey-in-memory", defaultValue = "0", paramLabel = "F",
      description = "share of passkey prompts whose key line ends before their last entry, so only memory (cross-batch) "
          + "reaches it (default: ${DEFAULT-VALUE}: the key anywhere)") double passkeyInMemory;
  @Option(names = "--recall-share", defaultValue = "0", paramLabel = "F",
      description = "share of the synthetic documents that are recall documents instead of passkey prompts: a run of "
          + "random digits and words in memory, repeated in the last entry, every repeated token a target "
          + "(default: ${DEFAULT-VALUE})") double recallShare;
  @Option(names = "--recall-local", defaultValue = "0", paramLabel = "F",
      description = "share of recall documents whose first copy is in the last entry too, a local lookup that grows "
          + "the previous-token heads the memory lookup needs (default: ${DEFAULT-VALUE})") double recallLocal;
  @Option(names = "--recall-pool", defaultValue = "0", paramLabel = "N",
      description = "draw recall runs from the digits and N - 10 vocabulary pieces (default: 0, the digits and 20 "
          + "words: one token seldom identifies its successor)") int recallPool;

  // a new model's shape
  @Option(names = "--hidden", defaultValue = "256") int hidden;
  @Option(names = "--layers", defaultValue = "4") int layers;
  @Option(names = "--heads", defaultValue = "4") int heads;
  @Option(names = "--intermediate", defaultValue = "0", description = "default: 8/3 x hidden, a multiple of 32")
  int intermediate;
  @Option(names = "--window", defaultValue = "0", description = "max_position_embeddings (default: --length)")
  int window;
  @Option(names = "--mem-layers", split = ",", paramLabel = "L,...",
      description = "default: LongLLaMA-3B's proportion (6, 12, 18 of 26)") List<Integer> memLayers;
  @Option(names = "--no-mem-positionals", description = "a new model's memory layers without rotary positions "
      + "(the reference's mem_positionals false)") boolean noMemPositionals;

  // the run
  @Option(names = "--init-std", defaultValue = "0.02", paramLabel = "S",
      description = "a new model's initial weights' standard deviation (default: ${DEFAULT-VALUE}, LLaMA's)")
  double initStd;

  @Option(names = "--steps", defaultValue = "1000") int steps;
  @Option(names = "--batch", defaultValue = "8") int batch;
  @Option(names = "--length", defaultValue = "256", description = "tokens per batch entry") int length;
  @Option(names = "--k", defaultValue = "2", description = "batch entries per document") int k;
  @Option(names = "--cross-batch", defaultValue = "2", description = "FoT's d, most of the run") int crossBatch;
  @Option(names = "--cross-batch-late", defaultValue = "8", description = "d for the last part") int crossBatchLate;
  @Option(names = "--late-from", defaultValue = "0.9", description = "fraction of the run after which d is large")
  double lateFrom;
  @Option(names = "--no-stepping", description = "every entry sees the full range (no cross-batch stepping)")
  boolean noStepping;
  @Option(names = "--lr", defaultValue = "1e-3") double lr;
  @Option(names = "--warmup", defaultValue = "50") int warmup;
  @Option(names = "--min-lr-ratio", defaultValue = "0.1") double minLrRatio;
  @Option(names = "--weight-decay", defaultValue = "0.01") double weightDecay;
  @Option(names = "--clip", defaultValue = "1.0") double clip;
  @Option(names = "--seed", defaultValue = "1") long seed;
  @Option(names = "--eval-every", defaultValue = "100") int evalEvery;
  @Option(names = "--eval-batches", defaultValue = "2") int evalBatches;
  @Option(names = "--checkpoint-every", defaultValue = "200") int checkpointEvery;
  @Option(names = "--log-every", defaultValue = "10") int logEvery;
  @Option(names = "--dtype", defaultValue = "bfloat16", paramLabel = "bfloat16|float32",
      description = "weights of OUT/model (checkpoints are float32)") String dtype;
  @Option(names = "--device", defaultValue = "cpu", paramLabel = "cpu|gpu") String device;

  @Override
  public Integer call() throws Exception {
    TrainOptions o = new TrainOptions(steps, batch, length, k, crossBatch, crossBatchLate, lateFrom, !noStepping, lr,
        warmup, minLrRatio, weightDecay, clip, seed, evalEvery, evalBatches, checkpointEvery, logEvery, storage());
    boolean passkey = switch (task) {
      case "passkey" -> true;
      case "none" -> false;
      default -> throw new InputException("--task must be passkey or none, got " + task);
    };
    if (!passkey && data == null) {
      throw new InputException("no training data: give --data, or --task passkey");
    }
    if (!(recallShare >= 0 && recallShare <= 1)) {
      throw new InputException("--recall-share must be in [0, 1], got " + recallShare);
    }
    if (!(passkeyShare >= 0 && passkeyShare <= 1)) {
      throw new InputException("--passkey-share must be in [0, 1], got " + passkeyShare);
    }
    if (init != null && resume != null) {
      throw new InputException("--init and --resume exclude each other (a checkpoint already holds the model)");
    }
    Device dev = device();
    if (resume == null && init == null) {
      // before any allocation: a new model's parameters alone (weights, gradients, two moments)
      int v = 32000;
      long h = hidden;
      long inter = intermediate > 0 ? intermediate : h * 8 / 3;
      long params = 2L * v * h + (long) layers * (4 * h * h + 3 * h * inter);
      fits(16 * params, "a model of " + params + " parameters (--hidden " + hidden + ", --layers " + layers + ")");
    }
    if (resume != null) {
      TrainingCheckpoint.step(resume); // a clear error before anything else is read
    }
    Path from = resume != null ? resume : init;
    Path tokPath = tokenizerFile != null ? tokenizerFile
        : from != null && Files.isRegularFile(from.resolve("tokenizer.model")) ? from.resolve("tokenizer.model") : null;
    if (tokPath == null || !Files.isRegularFile(tokPath)) {
      throw new InputException(tokPath == null ? "train needs a tokenizer: pass --tokenizer FILE (tokenizer.model)"
          : "tokenizer " + tokPath + " does not exist");
    }
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(tokPath);
    LongLlama model;
    if (resume != null) {
      model = TrainingCheckpoint.loadTrainable(resume, dev, DataType.FLOAT32);
    } else if (init != null) {
      model = TrainingCheckpoint.loadTrainable(init, dev, DataType.FLOAT32);
    } else {
      LongLlamaConfig c = HfConfig.newModel(tok.vocabSize(), hidden, heads,
          intermediate > 0 ? intermediate : (hidden * 8 / 3 + 31) / 32 * 32, layers, window > 0 ? window : length,
          memLayers, !noMemPositionals);
      model = Init.fresh(c, NDManager.newBaseManager(dev), DataType.FLOAT32, seed, initStd);
    }
    try (LongLlama m = model) {
      m.config().checkTokenizer(tok.vocabSize());
      checkFits(m.config(), parameters(m));
      if (length > m.config().maxPositionEmbeddings()) {
        throw new InputException("--length " + length + " exceeds the model's window (max_position_embeddings "
            + m.config().maxPositionEmbeddings() + ")");
      }
      Trainer trainer = new Trainer(m, o);
      if (resume != null) {
        TrainingCheckpoint.restore(trainer, resume);
      }
      System.out.printf(Locale.ROOT, "train: %d layers, hidden %d, memory layers %s, %,d parameters; %d steps of %d x %d "
          + "tokens (k %d, cross-batch %d then %d) on %s%n", m.config().numLayers(), m.config().hiddenSize(),
          m.config().memLayers(), parameters(m), steps, batch, length, k, crossBatch, crossBatchLate, dev);
      try (TrainingCorpus corpus = data == null ? null : new TrainingCorpus(data, format, tok)) {
        KPacking train = packing(corpus, tok, passkey, seed);
        List<Batch> eval = new ArrayList<>();
        if (evalBatches > 0 && evalEvery > 0) {
          KPacking e = passkey ? new KPacking(batch, length, k, null, passkeyEval(tok, seed), 1.0, seed + 1)
              : packing(corpus, tok, false, seed + 1);
          eval.addAll(batches(e, evalBatches));
        }
        Path ckDir = out.resolve("checkpoint");
        java.util.Map<String, List<Batch>> more = new java.util.LinkedHashMap<>();
        if (passkey && recallShare > 0 && !eval.isEmpty()) {
          RecallTask r = new RecallTask(tok, k * length + 1, (k - 1) * length, seed + 1_000_033, 0, recallPool);
          more.put("recall from memory", batches(new KPacking(batch, length, k, null, r::next, 1.0, seed + 2),
              evalBatches));
        }
        Trainer.Result r = trainer.run(train::next, eval, more, t -> TrainingCheckpoint.save(t, tokPath, ckDir));
        TrainingCheckpoint.save(trainer, tokPath, ckDir);
        TrainingCheckpoint.export(m, tokPath, o.outputType(), out.resolve("model"));
        String evaluation = Double.isNaN(r.evalLoss()) ? "no evaluation"
            : String.format(Locale.ROOT, "eval loss %.4f (target tokens ranked first %.1f%%)", r.evalLoss(),
                100 * r.evalAccuracy());
        System.out.printf(Locale.ROOT, "train: %d steps, loss %.4f -> %.4f, %s, %.0f tokens/s, %.0f s; model in %s%n",
            r.steps(), r.firstLoss(), r.lastLoss(), evaluation, r.tokensPerSecond(), r.seconds(), out.resolve("model"));
      }
    }
    return 0;
  }

  /**
   * Refuses a run whose parameters (weights, gradients, two moments) and attention scores kept for
   * backward would exceed this machine's memory: a clear error instead of an allocation failure.
   */
  private void checkFits(LongLlamaConfig c, long params) {
    long scores = (long) batch * c.numHeads() * length * length;
    long perLayer = scores * 3 + (long) batch * length * (6L * c.hiddenSize() + 3L * c.intermediateSize());
    long cross = scores * Math.min(batch - 1, Math.max(crossBatch, crossBatchLate)) * 3 * c.memLayers().size();
    fits(16 * params + 4 * (perLayer * c.numLayers() + cross), "training " + params + " parameters on --batch " + batch
        + " x --length " + length + " (cross-batch up to " + Math.max(crossBatch, crossBatchLate) + ")");
  }

  private static void fits(long bytes, String what) {
    long total = ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
        .getOperatingSystemMXBean()).getTotalMemorySize();
    if (bytes > total) {
      throw new InputException(String.format(Locale.ROOT, "%s needs about %.1f GB, this machine has %.1f GB: "
          + "lower the sizes", what, bytes / 1e9, total / 1e9));
    }
  }

  private KPacking packing(TrainingCorpus corpus, SentencePieceTokenizer tok, boolean passkey, long s) {
    Iterator<Doc> texts = corpus == null ? null : corpus.documents();
    if (!passkey) {
      return new KPacking(batch, length, k, texts, null, 0, s);
    }
    PasskeyTask p = new PasskeyTask(tok, k * length + 1, s + 7, passkeyContextLoss, passkeyTail, (k - 1) * length,
        passkeyInMemory);
    if (recallShare == 0) {
      return new KPacking(batch, length, k, texts, p::next, passkeyShare, s);
    }
    RecallTask r = new RecallTask(tok, k * length + 1, (k - 1) * length, s + 11, recallLocal, recallPool);
    java.util.Random pick = new java.util.Random(s + 13);
    return new KPacking(batch, length, k, texts, () -> pick.nextDouble() < recallShare ? r.next() : p.next(),
        passkeyShare, s);
  }

  /**
   * The held-out passkey prompts, their keys only in memory; with the recall task on, its
   * documents stripped of targets beside them in the training's share, as the negatives the
   * prompts see (a prompt is nobody's negative).
   */
  private java.util.function.Supplier<Doc> passkeyEval(SentencePieceTokenizer tok, long s) {
    PasskeyTask p = new PasskeyTask(tok, k * length + 1, s + 1_000_003, 0, passkeyTail, (k - 1) * length,
        k > 1 ? 1.0 : 0.0);
    if (recallShare == 0) {
      return p::next;
    }
    RecallTask r = new RecallTask(tok, k * length + 1, (k - 1) * length, s + 1_000_017, 0, recallPool);
    java.util.Random pick = new java.util.Random(s + 1_000_019);
    double negatives = recallShare < 1 ? recallShare : 0.5; // a run of recall documents only still asks prompts
    return () -> pick.nextDouble() < negatives ? r.next().withoutTargets() : p.next();
  }

  /** The next {@code n} batches of a packing (held-out evaluation sets). */
  private static List<Batch> batches(KPacking p, int n) {
    List<Batch> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(p.next());
    }
    return out;
  }

  private static long parameters(LongLlama m) {
    return m.parameters().values().stream().mapToLong(a -> a.size()).sum();
  }

  private StorageType storage() {
    return switch (dtype) {
      case "bfloat16", "bf16" -> StorageType.BF16;
      case "float32", "fp32" -> StorageType.F32;
      default -> throw new InputException("--dtype must be bfloat16 or float32, got " + dtype);
    };
  }

  private Device device() {
    switch (device) {
      case "cpu":
        return Device.cpu();
      case "gpu":
        if (Engine.getInstance().getGpuCount() == 0) {
          throw new InputException("--device gpu: DJL sees no GPU (this build has PyTorch's CPU natives; "
              + "build with -Ppytorch-cu128 on a machine with CUDA)");
        }
        return Device.gpu();
      default:
        throw new InputException("--device must be cpu or gpu, got " + device);
    }
  }
}
