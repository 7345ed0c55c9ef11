package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import io.longmem.model.memory.ReadMemory;
import io.longmem.model.compute.ComputeDType;
import java.io.Serializable;

/**
 * What an encode run does, shipped to every task. The parts that decide the output's bytes
 * ({@link #plan()}) are recorded in the output directory so that a resumed run can refuse to
 * mix shards of two different plans.
 *
 * @param model checkpoint directory (must be readable at the same path on every executor)
 * @param tokenizer SentencePiece model for text documents; null: the checkpoint's tokenizer.model
 * @param memDType mem_dtype override (float32, bfloat16, float16); null: the checkpoint's
 * @param indexFactory FAISS factory string for every (shard, layer, head) index
 * @param trainingRows keys sampled per shard to train IVF/PQ indexes
 * @param shards number of shards (= Spark partitions); documents go to shards by a hash of their id
 * @param batchSize documents read side by side in the batch dimension
 * @param maxBatchTokens cap on batch rows times the longest document's tokens
 * @param torchThreads intra-op threads of libtorch per executor JVM (0: libtorch's default)
 * @param readMemory what a document's windows attend to while it is read ({@link ReadMemory}:
 *     dense, the reference, or knn:K, linear in the document's length); null: dense
 * @param computeDType dtype of the large matmuls (float32, bfloat16); null: float32
 */
public record EncodeSpec(String model, String tokenizer, String memDType, String indexFactory, int trainingRows,
    int shards, int batchSize, int maxBatchTokens, int torchThreads, Corpus.Spec input, String readMemory,
    String computeDType) implements Serializable {

  /** A spec that reads with dense memory (the reference) and computes in float32 (the reference's dtype). */
  public EncodeSpec(String model, String tokenizer, String memDType, String indexFactory, int trainingRows,
      int shards, int batchSize, int maxBatchTokens, int torchThreads, Corpus.Spec input) {
    this(model, tokenizer, memDType, indexFactory, trainingRows, shards, batchSize, maxBatchTokens, torchThreads, input,
        null, null);
  }

  public EncodeSpec {
    readMemory = ReadMemory.parse(readMemory == null ? "dense" : readMemory, ReadMemory.DEFAULT_K).toString();
    if (computeDType != null) {
      ComputeDType.parse(computeDType); // a clear error before any work
    }
    if (shards < 1) {
      throw new InputException("--shards must be >= 1, got " + shards);
    }
    if (batchSize < 1) {
      throw new InputException("--batch-size must be >= 1, got " + batchSize);
    }
    if (maxBatchTokens < 1) {
      throw new InputException("--max-batch-tokens must be >= 1, got " + maxBatchTokens);
    }
    if (trainingRows < 1) {
      throw new InputException("--training-rows must be >= 1, got " + trainingRows);
    }
    if (torchThreads < 0) {
      throw new InputException("--torch-threads must be >= 0, got " + torchThreads);
    }
  }

  /** The compute dtype, float32 unless asked. */
  public ComputeDType compute() {
    return computeDType == null ? ComputeDType.FLOAT32 : ComputeDType.parse(computeDType);
  }

  /**
   * The choices a resumed run must share with the run it resumes: the same documents in the same
   * shards, encoded by the same model into the same kind of index. Batching and threads are
   * left out: they change speed, not which shard holds what; so is the
   * compute dtype (its rounding moves memory by about what mem_dtype's does, not which shard holds what).
   */
  public record Plan(String modelFingerprint, String memDType, String indexFactory, int trainingRows, int shards,
      String input, String format, String idColumn, String textColumn, String tokenIdsColumn, String tokenizer,
      String readMemory) {}

  public Plan plan(String modelFingerprint, String resolvedMemDType, String tokenizerFingerprint) {
    return new Plan(modelFingerprint, resolvedMemDType, indexFactory, trainingRows, shards, input.path(),
        input.format().name().toLowerCase(java.util.Locale.ROOT), input.idColumn(), input.textColumn(),
        input.tokenIdsColumn(), tokenizerFingerprint, readMemory);
  }
}
