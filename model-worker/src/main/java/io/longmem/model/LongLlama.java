package io.longmem.model;

import io.longmem.io.InputException;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.LongLlamaCache.Context;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.CheckpointException;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.compute.Bf16Matrix;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.memory.Memory;
import io.longmem.model.memory.MemoryContents;
import io.longmem.model.memory.ReadMemory;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * LongLLaMA (Focused Transformer) on DJL: one readable forward pass over {@link Weights} that
 * computes what the published PyTorch implementation computes.
 *
 * <p>Input is read in windows of {@code max_position_embeddings} tokens. In a memory layer every
 * query attends to its local context (the window, plus the generation cache) and to memory, the
 * (key, value) pairs of everything read before; {@link #forward} moves whole windows to memory,
 * and during generation the local cache moves there when it overflows a window. Positions are
 * relative to the local context; memory keys carry no position (rotated as if at position 0).
 * What each layer attends to is its {@link Attention.Mode}.
 */
public final class LongLlama implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(LongLlama.class);

  /** What {@link #forward} returns. */
  public enum Output {
    /** logits [B, L, vocab] for every input token */
    ALL_LOGITS,
    /** logits [B, vocab] of the last input token */
    LAST_LOGITS,
    /** nothing: only memory and caches are updated; layers after the last memory layer are skipped */
    MEMORY_ONLY
  }

  private final LongLlamaConfig config;
  private final Weights weights;
  private final Attention attention;
  /** -0.5 as an array libtorch owns: pow keeps its exponent for backward (see Attention's scale). */
  private final NDArray minusHalf;

  private LongLlama(LongLlamaConfig config, Weights weights) {
    this.config = config;
    this.weights = weights;
    this.attention = new Attention(config, weights);
    this.minusHalf = Attention.constant(weights.manager(), -0.5f);
  }

  /** Loads a checkpoint with its own config.json. */
  public static LongLlama load(Checkpoint checkpoint, Device device) {
    return load(checkpoint, checkpoint.config(), device);
  }

  /**
   * Loads a checkpoint with a config that may override run-time fields of its config.json
   * (mem_dtype, last_context_length, mem_layers, mem_attention_grouping); shapes must still agree.
   */
  public static LongLlama load(Checkpoint checkpoint, LongLlamaConfig config, Device device) {
    return load(checkpoint, config, device, ComputeDType.FLOAT32);
  }

  /**
   * As {@link #load(Checkpoint, LongLlamaConfig, Device)}, with the large matmuls in the given
   * dtype (bfloat16: CPU only, weights packed once for oneDNN).
   */
  public static LongLlama load(Checkpoint checkpoint, LongLlamaConfig config, Device device, ComputeDType compute) {
    LongLlamaConfig c = checkpoint.config();
    if (c.hiddenSize() != config.hiddenSize() || c.numLayers() != config.numLayers()
        || c.vocabSize() != config.vocabSize() || c.numHeads() != config.numHeads()
        || c.intermediateSize() != config.intermediateSize()) {
      throw new CheckpointException("config does not match the checkpoint's shapes in " + checkpoint.dir());
    }
    long t0 = System.nanoTime();
    Weights weights = new Weights(checkpoint, config, device, compute);
    try {
      LongLlama model = new LongLlama(config, weights);
      LOG.info("loaded {} ({}, {} layers, hidden {}, memory layers {}) on {}, {} compute, in {} ms", checkpoint.dir(),
          checkpoint.layout(), config.numLayers(), config.hiddenSize(), config.memLayers(), device,
          compute.label(), (System.nanoTime() - t0) / 1_000_000);
      return model;
    } catch (RuntimeException e) {
      weights.close();
      throw e;
    }
  }

  /**
   * A model over weights held in memory (training: {@link Weights#of}); the model owns them.
   */
  public static LongLlama of(LongLlamaConfig config, Weights weights) {
    return new LongLlama(config, weights);
  }

  /** The weights' arrays by parameter name: what training updates (float32 compute). */
  public java.util.Map<String, NDArray> parameters() {
    return weights.parameters();
  }

  /** The parameters under their Hugging Face tensor names (q/k/v and gate/up split, as views). */
  public java.util.Map<String, NDArray> huggingFaceTensors() {
    return weights.huggingFaceTensors();
  }

  public LongLlamaConfig config() {
    return config;
  }

  /** The dtype of the large matmuls. */
  public ComputeDType compute() {
    return weights.compute();
  }

  /** Bytes of the projection weights, what one decode step reads (the decode floor's numerator). */
  public long projectionBytes() {
    return weights.projectionBytes();
  }

  public Device device() {
    return weights.device();
  }

  public NDManager manager() {
    return weights.manager();
  }

  /** A fresh cache (empty local context, empty dense memory) for a batch of sequences. */
  public LongLlamaCache newCache(int batch) {
    return new LongLlamaCache(manager(), batch, null);
  }

  /** A fresh cache whose memory layers read and write the given memory backend. */
  public LongLlamaCache newCache(int batch, Memory memory) {
    return new LongLlamaCache(manager(), batch, memory);
  }

  /** Floats a per-query memory answer may hold at once (see {@link Attention}); tests lower it. */
  void retrieveBudget(long floats) {
    attention.retrieveBudget(floats);
  }

  // ---------------------------------------------------------------------------------------------
  // The long-input loop: LongLlamaForCausalLM.forward / _handle_long_input of the reference

  /**
   * Reads {@code ids} after whatever the cache already holds. All but the last
   * {@code lastContextLength} tokens go to memory window by window (each window attends to the
   * memory of the windows before it); the rest is processed in one call. With {@code useCache}
   * that rest (and later single tokens) stays in the local cache, which overflows into memory a
   * window at a time; without, it goes to memory too.
   *
   * @param ids [batch][length] token ids, length >= 1, all rows the same length
   * @param padding [batch][length] 1 for real tokens, 0 for padding; null means all real
   * @param out the manager that owns the returned logits (null for {@link Output#MEMORY_ONLY})
   * @return logits on {@code out}'s device, as {@code output} says; null for MEMORY_ONLY
   */
  public NDArray forward(LongLlamaCache cache, long[][] ids, float[][] padding, boolean useCache,
      int lastContextLength, Output output, NDManager out) {
    validateInput(cache.batch(), ids, padding, lastContextLength);
    if (output == Output.MEMORY_ONLY && (useCache || cache.hasLocal())) {
      throw new InputException("MEMORY_ONLY reads input into memory without a local cache; "
          + "use it with useCache=false on a cache without local context");
    }
    int batch = ids.length;
    int length = ids[0].length;
    int window = config.maxPositionEmbeddings();
    try (NDScope scope = new NDScope()) {
      scope.suppressNotUsedWarning();
      NDArray idArray = owned(manager().create(ids));
      NDArray padArray = padding == null ? manager().ones(new Shape(batch, length)) : owned(manager().create(padding));
      NDArray positions = positions(cache, batch, length);
      int memLength = Math.max(length - lastContextLength, 0);
      List<NDArray> logits = new ArrayList<>();
      int upTo = output == Output.MEMORY_ONLY ? config.lastMemoryLayer() : config.numLayers() - 1;
      for (int beg = 0; beg < memLength; beg += window) {
        int end = Math.min(memLength, beg + window);
        window(cache, idArray, padArray, positions, beg, end, cache.hasLocal() && useCache, upTo, output, logits);
      }
      if (memLength < length) {
        window(cache, idArray, padArray, positions, memLength, length, useCache, upTo, output, logits);
      }
      if (output == Output.MEMORY_ONLY) {
        return null;
      }
      NDArray result;
      if (output == Output.LAST_LOGITS) {
        NDArray last = logits.get(logits.size() - 1);
        result = last.get(new NDIndex(":, -1, :"));
      } else {
        result = logits.size() == 1 ? logits.get(0) : NDArrays.concat(new NDList(logits), 1);
      }
      result = result.duplicate();
      NDScope.unregister(result);
      result.attach(out);
      return result;
    }
  }

  /**
   * Reads documents into memory as {@link Output#MEMORY_ONLY} does (windows in order, each
   * attending to the memory of the windows before it; layers after the last memory layer are not
   * computed) and returns what the memory layers remembered.
   *
   * @param ids [batch][length] token ids, rows right-padded to one length
   * @param padding [batch][length] 1 for real tokens, then 0 for padding; null means all real
   * @param allLayers compute every layer (and the last token's logits) as a plain forward pass
   *     would: only for measuring what skipping the layers after the last memory layer saves
   * @return per batch row, one block per memory layer (in config order) of the row's real tokens:
   *     keys (unrotated) and values [H, n, D] rounded to mem_dtype, positions 0..n-1
   */
  public List<List<MemoryBlock>> read(long[][] ids, float[][] padding, boolean allLayers) {
    return read(ids, padding, allLayers, ReadMemory.DENSE);
  }

  /**
   * {@link #read(long[][], float[][], boolean)} with the memory the windows attend to while reading:
   * dense (the reference) or kNN (linear time on long documents). What is returned is every pair
   * read, either way.
   */
  public List<List<MemoryBlock>> read(long[][] ids, float[][] padding, boolean allLayers, ReadMemory readMemory) {
    if (config.memLayers().isEmpty()) {
      throw new InputException("the model has no memory layers: nothing to read into memory");
    }
    if (!allLayers && config.memLayers().size() == 1 && BATCHED_WINDOWS) {
      validateInput(ids.length, ids, padding, 0);
      return readWindowsBatched(ids, padding);
    }
    return readInOrder(ids, padding, allLayers, readMemory);
  }

  /** {@link #read}'s window-by-window loop, whatever the model. */
  List<List<MemoryBlock>> readInOrder(long[][] ids, float[][] padding, boolean allLayers, ReadMemory readMemory) {
    Memory readInto = readMemory.create(manager(), ids.length, config.numHeads(), config.headDim());
    try (LongLlamaCache cache = newCache(ids.length, readInto)) {
      validateInput(cache.batch(), ids, padding, 0);
      int[] tokens = realTokens(padding, ids.length, ids[0].length);
      if (allLayers) {
        try (NDManager out = manager().newSubManager()) {
          forward(cache, ids, padding, false, 0, Output.LAST_LOGITS, out);
        }
      } else {
        forward(cache, ids, padding, false, 0, Output.MEMORY_ONLY, null);
      }
      MemoryContents memory = (MemoryContents) cache.memory();
      List<List<MemoryBlock>> rows = new ArrayList<>(ids.length);
      for (int b = 0; b < ids.length; b++) {
        List<MemoryBlock> blocks = new ArrayList<>();
        for (int layer : config.memLayers()) {
          blocks.add(block(layer, tokens[b], memory.keys(layer, b, tokens[b]), memory.values(layer, b, tokens[b])));
        }
        rows.add(blocks);
      }
      return rows;
    }
  }

  /**
   * Whether {@link #read} of a model with one memory layer reads all windows as one batch (unless
   * the system property {@code longmem.read.batched=false} asks for the window-by-window loop).
   */
  private static final boolean BATCHED_WINDOWS = !"false".equals(System.getProperty("longmem.read.batched"));

  /** Window tokens per model call of a batched read: the rows of one call's activations. */
  private static final int BATCHED_READ_TOKENS = 16_384;

  /**
   * {@link #read} for a model with one memory layer. There a window's pairs depend on its own
   * tokens only: the layers before the memory layer attend within the window, and the memory
   * layer's attention to earlier windows produces an output a read never uses. So every window of
   * every row becomes a batch row of its own, at its own positions, and a long document costs a
   * few large calls instead of one small call per window (the same arithmetic per window).
   */
  private List<List<MemoryBlock>> readWindowsBatched(long[][] ids, float[][] padding) {
    int window = config.maxPositionEmbeddings();
    int layer = config.memLayers().get(0);
    int heads = config.numHeads();
    int dim = config.headDim();
    int[] tokens = realTokens(padding, ids.length, ids[0].length);
    List<int[]> windows = new ArrayList<>(); // {row, first token, tokens}
    float[][] keys = new float[ids.length][];
    float[][] values = new float[ids.length][];
    for (int b = 0; b < ids.length; b++) {
      keys[b] = new float[heads * tokens[b] * dim];
      values[b] = new float[heads * tokens[b] * dim];
      for (int s = 0; s < tokens[b]; s += window) {
        windows.add(new int[] {b, s, Math.min(window, tokens[b] - s)});
      }
    }
    int perCall = Math.max(1, BATCHED_READ_TOKENS / window);
    for (int first = 0; first < windows.size(); first += perCall) {
      List<int[]> part = windows.subList(first, Math.min(windows.size(), first + perCall));
      int rows = part.size();
      long[][] cid = new long[rows][window];
      float[][] cpad = new float[rows][window];
      long[][] cpos = new long[rows][window];
      for (int r = 0; r < rows; r++) {
        int[] w = part.get(r);
        System.arraycopy(ids[w[0]], w[1], cid[r], 0, w[2]);
        java.util.Arrays.fill(cpad[r], 0, w[2], 1f);
        for (int t = 0; t < window; t++) {
          cpos[r][t] = w[1] + t; // the positions the window-by-window loop gives it
        }
      }
      Memory into = ReadMemory.DENSE.create(manager(), rows, heads, dim);
      try (LongLlamaCache cache = newCache(rows, into); NDScope scope = new NDScope()) {
        scope.suppressNotUsedWarning();
        call(cache, owned(manager().create(cid)), owned(manager().create(cpad)), owned(manager().create(cpos)), false,
            layer, true);
        MemoryContents memory = (MemoryContents) cache.memory();
        for (int r = 0; r < rows; r++) {
          int[] w = part.get(r);
          copyWindow(memory.keys(layer, r, w[2]), keys[w[0]], tokens[w[0]], w[1], w[2], heads, dim);
          copyWindow(memory.values(layer, r, w[2]), values[w[0]], tokens[w[0]], w[1], w[2], heads, dim);
        }
      }
    }
    List<List<MemoryBlock>> out = new ArrayList<>(ids.length);
    for (int b = 0; b < ids.length; b++) {
      out.add(List.of(block(layer, tokens[b], keys[b], values[b])));
    }
    return out;
  }

  /** What one memory layer read of a row's n real tokens: [H, n, D] pairs at positions 0..n-1. */
  private MemoryBlock block(int layer, int n, float[] keys, float[] values) {
    int[] positions = new int[n];
    for (int t = 0; t < n; t++) {
      positions[t] = t;
    }
    return new MemoryBlock(layer, "", positions, config.numHeads(), config.headDim(), keys, values,
        config.memDType().storage());
  }

  /** A window's [H, n, D] pairs into its row's [H, tokens, D] at token {@code at}. */
  private static void copyWindow(float[] from, float[] to, int tokens, int at, int n, int heads, int dim) {
    for (int h = 0; h < heads; h++) {
      System.arraycopy(from, h * n * dim, to, (h * tokens + at) * dim, n * dim);
    }
  }

  /** Per row the number of real tokens; padding must follow them (right-padded rows). */
  private static int[] realTokens(float[][] padding, int batch, int length) {
    int[] n = new int[batch];
    for (int b = 0; b < batch; b++) {
      while (n[b] < length && (padding == null || padding[b][n[b]] == 1f)) {
        n[b]++;
      }
      for (int t = n[b]; t < length; t++) {
        if (padding[b][t] != 0f) {
          throw new InputException("row " + b + ": a real token after padding (rows must be right-padded)");
        }
      }
    }
    return n;
  }

  /**
   * One model call over tokens [beg, end) in a scope of its own: the window's temporaries (masks,
   * embeddings, hidden states, slices) are freed when it ends, so reading a long document holds
   * only memory, the local cache and one window's work. Only its logits (if wanted) outlive it;
   * with LAST_LOGITS those of the previous window are freed.
   */
  private void window(LongLlamaCache cache, NDArray ids, NDArray pad, NDArray positions, int beg, int end,
      boolean useCache, int upTo, Output output, List<NDArray> logits) {
    NDArray kept = null;
    try (NDScope scope = new NDScope()) {
      scope.suppressNotUsedWarning();
      NDArray h = call(cache, slice(ids, beg, end), slice(pad, beg, end), slice(positions, beg, end), useCache, upTo,
          output == Output.MEMORY_ONLY);
      if (output != Output.MEMORY_ONLY) {
        if (output == Output.LAST_LOGITS) {
          h = h.get(new NDIndex(":, -1:, :"));
        }
        kept = weights.lmHead().apply(h);
        NDScope.unregister(kept);
      }
    }
    if (kept == null) {
      return;
    }
    NDScope.register(kept); // back into the scope of forward
    if (output == Output.LAST_LOGITS) {
      logits.forEach(NDArray::close);
      logits.clear();
    }
    logits.add(kept);
  }

  private void validateInput(int cacheBatch, long[][] ids, float[][] padding, int lastContextLength) {
    if (ids.length == 0 || ids.length != cacheBatch) {
      throw new InputException("batch of " + ids.length + " sequences, the cache holds " + cacheBatch);
    }
    int length = ids[0].length;
    if (length == 0) {
      throw new InputException("empty input: at least one token id is needed");
    }
    for (int b = 0; b < ids.length; b++) {
      if (ids[b].length != length) {
        throw new InputException("input row " + b + " has " + ids[b].length + " tokens, row 0 has "
            + length + " (pad rows to one length and pass a padding mask)");
      }
      int t = config.outsideVocabulary(ids[b]);
      if (t >= 0) {
        throw new InputException("token id " + ids[b][t] + " at row " + b + ", position " + t
            + " is outside the vocabulary [0, " + config.vocabSize() + ")");
      }
    }
    if (padding != null) {
      if (padding.length != ids.length) {
        throw new InputException("padding mask has " + padding.length + " rows, input has " + ids.length);
      }
      for (int b = 0; b < padding.length; b++) {
        if (padding[b].length != length) {
          throw new InputException("padding mask row " + b + " has " + padding[b].length
              + " entries, input has " + length);
        }
        for (float p : padding[b]) {
          if (p != 0f && p != 1f) {
            throw new InputException("padding mask entries must be 0 or 1, got " + p);
          }
        }
      }
    }
    if (lastContextLength < 0) {
      throw new InputException("last_context_length must be >= 0, got " + lastContextLength);
    }
  }

  /** Positions continue after the local cache (max position + 1), or start at 0 without one. */
  private NDArray positions(LongLlamaCache cache, int batch, int length) {
    long[] next = cache.positionsAfter();
    long[][] pos = new long[batch][length];
    for (int b = 0; b < batch; b++) {
      for (int t = 0; t < length; t++) {
        pos[b][t] = next[b] + t;
      }
    }
    return owned(manager().create(pos));
  }

  /**
   * A copy in memory that libtorch owns. DJL wraps Java arrays in a direct buffer that only the
   * returned NDArray keeps reachable, while views of it (slices of the positions and padding that
   * the local cache keeps after the call) point into the same bytes: once the wrapper is closed
   * the collector frees them under the views.
   */
  private static NDArray owned(NDArray wrapped) {
    NDArray copy = wrapped.duplicate();
    wrapped.close();
    return copy;
  }

  private static NDArray slice(NDArray a, int beg, int end) {
    return a.get(new NDIndex(":, {}:{}", beg, end));
  }

  // ---------------------------------------------------------------------------------------------
  // Training: FoT's forward pass over a batch of windows

  /**
   * The training forward pass (FoT): every entry of {@code ids} [B, L] is one window at positions
   * 0..L-1, causal, no cache; memory layers attend across the batch as {@code crossBatch} says
   * ({@link Attention.Mode#CROSS_BATCH}), the others locally. Records gradients where the
   * weights require them (inside a GradientCollector).
   *
   * @param ids [B, L] int64 token ids, on the model's device
   * @return [B, L, hidden] the final-normed hidden states ({@link #logits} projects them)
   */
  public NDArray trainingForward(NDArray ids, CrossBatch crossBatch) {
    long batch = ids.getShape().get(0);
    long length = ids.getShape().get(1);
    if (crossBatch.batch() != batch) {
      throw new InputException("cross-batch for " + crossBatch.batch() + " entries, the batch has " + batch);
    }
    if (length > config.maxPositionEmbeddings()) {
      throw new InputException("training windows of " + length + " tokens exceed max_position_embeddings "
          + config.maxPositionEmbeddings());
    }
    NDArray rows = manager().arange(0, (int) length, 1, DataType.INT64).reshape(length, 1);
    NDArray cols = manager().arange(0, (int) length, 1, DataType.INT64).reshape(1, length);
    NDArray mask = cols.gt(rows).toType(DataType.FLOAT32, false).mul(Memory.MASK_MIN).reshape(1, 1, length, length);
    NDArray positions = cols.broadcast(batch, length);
    NDArray h = weights.embed().get(new NDIndex("{}", ids));
    for (int l = 0; l < config.numLayers(); l++) {
      Attention.Mode mode = config.isMemoryLayer(l) ? Attention.Mode.CROSS_BATCH : Attention.Mode.LOCAL;
      h = layer(l, mode, h, mask, positions, null, null, crossBatch).out();
    }
    return rmsNorm(h, weights.norm());
  }

  /** [..., hidden] hidden states to [..., vocab] logits. */
  public NDArray logits(NDArray hidden) {
    return weights.lmHead().apply(hidden);
  }

  /** One decoder layer: attention and MLP with their residuals; the output and the attended local context. */
  private Attention.Result layer(int l, Attention.Mode mode, NDArray h, NDArray mask, NDArray positions,
      Context past, Memory memory, CrossBatch crossBatch) {
    Weights.Layer w = weights.layer(l);
    Attention.Result attn = attention.forward(l, mode, rmsNorm(h, w.inputNorm()), mask, positions, past, memory,
        crossBatch);
    NDArray out = h.add(attn.out());
    return new Attention.Result(out.add(mlp(w, rmsNorm(out, w.postNorm()))), attn.local());
  }

  /**
   * Whether bfloat16 compute runs the MLP as one native call (unless the system property
   * {@code longmem.bf16.mlp=false} asks for the two projections and DJL's activation between).
   */
  private static final boolean FUSED_MLP = !"false".equals(System.getProperty("longmem.bf16.mlp"));

  /** down(silu(gate(x)) * up(x)); in bfloat16 compute one native call (no float32 [.., 2 x intermediate] tensor). */
  private static NDArray mlp(Weights.Layer w, NDArray x) {
    if (FUSED_MLP && w.gateUp() instanceof Bf16Matrix gu && w.down() instanceof Bf16Matrix down) {
      return Bf16Matrix.mlp(gu, down, x);
    }
    NDList gu = w.gateUp().apply(x).split(2, x.getShape().dimension() - 1);
    return w.down().apply(silu(gu.get(0)).mul(gu.get(1)));
  }

  // ---------------------------------------------------------------------------------------------
  // One model call: LongLlamaModel.forward of the reference

  /**
   * Layers 0..upToLayer over one input; the cache's local context is replaced (or dropped) after.
   * With {@code memoryOnly} the last layer (a memory layer) only remembers its keys and values: its
   * attention output is what nobody reads.
   */
  private NDArray call(LongLlamaCache cache, NDArray ids, NDArray pad, NDArray positions, boolean useCache,
      int upToLayer, boolean memoryOnly) {
    long batch = ids.getShape().get(0);
    long length = ids.getShape().get(1);
    NDArray mask2d = cache.maskWith(pad);
    NDArray mask = decoderMask(mask2d, batch, length, cache.localLength());
    NDArray h = weights.embed().get(new NDIndex("{}", ids));
    Context[] nextLocal = new Context[config.numLayers()];
    for (int l = 0; l <= upToLayer; l++) {
      Attention.Mode mode = Attention.Mode.of(config, l, cache.hasLocal(), useCache);
      if (l == upToLayer && memoryOnly && mode == Attention.Mode.MEMORY_READ) {
        // a MEMORY_ONLY read ends at the last memory layer: its keys and values are all it needs
        attention.rememberOnly(l, rmsNorm(h, weights.layer(l).inputNorm()), mask, positions, cache.memory());
        break;
      }
      // each layer in its own scope: its intermediates are freed before the next layer runs
      NDArray[] kept;
      try (NDScope layerScope = new NDScope()) {
        layerScope.suppressNotUsedWarning();
        Attention.Result attn = layer(l, mode, h, mask, positions, cache.local(l), cache.memory(), null);
        NDArray out = attn.out();
        nextLocal[l] = attn.local();
        kept = useCache ? new NDArray[] {out, attn.local().keys(), attn.local().values(), attn.local().positions()}
            : new NDArray[] {out};
        NDScope.unregister(kept);
      }
      for (NDArray a : kept) {
        NDScope.register(a); // back into the scope of this call
      }
      h = kept[0];
    }
    if (useCache) {
      cache.keep(nextLocal, mask2d);
    } else {
      cache.dropLocal();
    }
    return upToLayer == config.numLayers() - 1 ? rmsNorm(h, weights.norm()) : h;
  }

    /** The reference's causal mask plus padding mask: [B, 1, T, past + T], 0 or MASK_MIN (or -inf). */
  private NDArray decoderMask(NDArray mask2d, long batch, long length, long past) {
    long src = past + length;
    NDArray expanded = mask2d.neg().add(1f).mul(Memory.MASK_MIN).reshape(batch, 1, 1, src);
    if (length == 1) {
      return expanded;
    }
    NDArray rows = manager().arange(0, (int) length, 1, DataType.INT64).add(past).reshape(length, 1);
    NDArray cols = manager().arange(0, (int) src, 1, DataType.INT64).reshape(1, src);
    NDArray causal = cols.gt(rows).toType(DataType.FLOAT32, false).mul(Memory.MASK_MIN).reshape(1, 1, length, src);
    return expanded.add(causal);
  }

  private NDArray rmsNorm(NDArray x, NDArray weight) {
    NDArray variance = x.square().mean(new int[] {-1}, true);
    // pow(-0.5) is torch.rsqrt, as the reference computes it: the rounding matters for bf16 memory
    return x.mul(variance.add((float) config.rmsNormEps()).pow(minusHalf)).mul(weight);
  }

  /** x / (1 + exp(-x)): torch's silu formula (x * sigmoid(x) rounds differently). */
  private static NDArray silu(NDArray x) {
    return x.div(x.neg().exp().add(1f));
  }

  @Override
  public void close() {
    weights.close();
  }
}
