package io.longmem.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.CheckpointException;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.StoredTensor;
import io.longmem.model.memory.Memory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * LongLLaMA (Focused Transformer) on DJL: the weights and one readable forward pass that computes
 * what the published PyTorch implementation computes.
 *
 * <p>Input is read in windows of {@code max_position_embeddings} tokens. In a memory layer every
 * query attends to its local context (the window, plus the generation cache) and to memory, the
 * (key, value) pairs of everything read before; {@link #forward} moves whole windows to memory,
 * and during generation the local cache moves there when it overflows a window. Positions are
 * relative to the local context; memory keys carry no position (rotated as if at position 0).
 *
 * <p>Weights are float32 on the device (F16/BF16 checkpoints are widened once at load); q/k/v and
 * gate/up projections are fused into one matrix each so every layer does three big GEMMs.
 */
public final class LongLlama implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(LongLlama.class);
  /** torch.finfo(float32).min: what the reference puts into masked positions. */
  static final float MASK_MIN = -Float.MAX_VALUE;
  /** The reference clamps attention scores at -1e6 after masking. */
  static final float SCORE_FLOOR = -1e6f;
  /** Largest attention score block (floats) computed at once; bounds memory for long windows. */
  static final long SCORE_BUDGET = 1L << 25;
  /**
   * Floats of keys (and as many of values) a per-query memory answer may hold at once: a 2048-token
   * window asking 32 heads x top-128 x head_dim 100 would need 3.4 GB each, so such windows ask
   * the memory for a block of queries at a time. Tests lower it to exercise the blocks.
   */
  static long retrieveBudget = 1L << 24;

  /** What {@link #forward} returns. */
  public enum Output {
    /** logits [B, L, vocab] for every input token */
    ALL_LOGITS,
    /** logits [B, vocab] of the last input token */
    LAST_LOGITS,
    /** nothing: only memory and caches are updated; layers after the last memory layer are skipped */
    MEMORY_ONLY
  }

  private record Layer(NDArray inputNorm, NDArray qkv, NDArray o, NDArray postNorm, NDArray gateUp,
      NDArray down) {}

  private final LongLlamaConfig config;
  private final NDManager manager;
  private final Device device;
  private final Checkpoint checkpoint; // keeps the memory-mapped weights alive
  private final NDArray embed;
  private final NDArray norm;
  private final NDArray lmHead;
  private final Layer[] layers;
  private final Rope rope;
  /** Direct buffers that weight arrays use as storage (DJL does not keep them reachable). */
  private final java.util.Map<NDArray, ByteBuffer> pinned = new java.util.IdentityHashMap<>();

  private LongLlama(LongLlamaConfig config, Checkpoint checkpoint, Device device) {
    this.config = config;
    this.checkpoint = checkpoint;
    this.device = device;
    this.manager = NDManager.newBaseManager(device);
    try {
      long t0 = System.nanoTime();
      embed = load("model.embed_tokens.weight");
      norm = load("model.norm.weight");
      lmHead = load("lm_head.weight");
      layers = new Layer[config.numLayers()];
      for (int l = 0; l < layers.length; l++) {
        String p = "model.layers." + l + ".";
        layers[l] = new Layer(
            load(p + "input_layernorm.weight"),
            fuse(p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"),
            load(p + "self_attn.o_proj.weight"),
            load(p + "post_attention_layernorm.weight"),
            fuse(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
            load(p + "mlp.down_proj.weight"));
      }
      rope = new Rope(manager, config.headDim(), config.ropeTheta(), config.maxPositionEmbeddings());
      LOG.info("loaded {} ({}, {} layers, hidden {}, memory layers {}) on {} in {} ms", checkpoint.dir(),
          checkpoint.layout(), config.numLayers(), config.hiddenSize(), config.memLayers(), device,
          (System.nanoTime() - t0) / 1_000_000);
    } catch (RuntimeException e) {
      manager.close();
      throw e;
    }
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
    LongLlamaConfig c = checkpoint.config();
    if (c.hiddenSize() != config.hiddenSize() || c.numLayers() != config.numLayers()
        || c.vocabSize() != config.vocabSize() || c.numHeads() != config.numHeads()
        || c.intermediateSize() != config.intermediateSize()) {
      throw new CheckpointException("config does not match the checkpoint's shapes in " + checkpoint.dir());
    }
    return new LongLlama(config, checkpoint, device);
  }

  public LongLlamaConfig config() {
    return config;
  }

  public Device device() {
    return device;
  }

  public NDManager manager() {
    return manager;
  }

  /** A fresh cache (empty local context, empty dense memory) for a batch of sequences. */
  public LongLlamaCache newCache(int batch) {
    return new LongLlamaCache(manager, batch, null);
  }

  /** A fresh cache whose memory layers read and write the given memory backend. */
  public LongLlamaCache newCache(int batch, Memory memory) {
    return new LongLlamaCache(manager, batch, memory);
  }

  // ---------------------------------------------------------------------------------------------
  // Loading

  private NDArray load(String name) {
    StoredTensor t = checkpoint.tensor(name);
    NDArray a;
    switch (t.type()) {
      case F32:
        // zero-copy: the array reads the memory-mapped file
        a = manager.create(t.data(), new Shape(t.shape()), DataType.FLOAT32);
        break;
      case F16:
        try (NDArray half = manager.create(t.data(), new Shape(t.shape()), DataType.FLOAT16)) {
          a = half.toType(DataType.FLOAT32, true);
        }
        break;
      case BF16:
        a = widenBFloat16(t);
        break;
      default:
        throw new CheckpointException(t.file() + ": tensor " + name + " has type " + t.type());
    }
    if (!device.equals(a.getDevice())) {
      NDArray moved = a.toDevice(device, true);
      a.close();
      a = moved;
    }
    return a;
  }

  /**
   * BF16 to F32 by shifting the 16 bits up, into one direct buffer that the array then uses as its
   * storage (zero-copy); the buffer is pinned for as long as the array lives.
   */
  private NDArray widenBFloat16(StoredTensor t) {
    java.nio.ShortBuffer src = t.data().asShortBuffer();
    long n = t.numel();
    if (n * 4 > Integer.MAX_VALUE) {
      throw new CheckpointException(t.file() + ": tensor " + t.name() + " is larger than 2 GiB as float32");
    }
    ByteBuffer dst = ByteBuffer.allocateDirect((int) n * 4).order(ByteOrder.nativeOrder());
    java.nio.IntBuffer out = dst.asIntBuffer();
    short[] in = new short[(int) Math.min(1 << 20, n)];
    int[] widened = new int[in.length];
    while (src.hasRemaining()) {
      int len = Math.min(in.length, src.remaining());
      src.get(in, 0, len);
      for (int i = 0; i < len; i++) {
        widened[i] = (in[i] & 0xffff) << 16;
      }
      out.put(widened, 0, len);
    }
    NDArray a = manager.create(dst, new Shape(t.shape()), DataType.FLOAT32);
    pinned.put(a, dst);
    return a;
  }

  private NDArray fuse(String... names) {
    NDList parts = new NDList();
    for (String n : names) {
      parts.add(load(n));
    }
    NDArray fused = NDArrays.concat(parts, 0);
    for (NDArray p : parts) {
      p.close();
      pinned.remove(p);
    }
    return fused;
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
    validateInput(cache, ids, padding, lastContextLength);
    if (output == Output.MEMORY_ONLY && (useCache || cache.local != null)) {
      throw new IllegalArgumentException("MEMORY_ONLY reads input into memory without a local cache; "
          + "use it with useCache=false on a cache without local context");
    }
    int batch = ids.length;
    int length = ids[0].length;
    int window = config.maxPositionEmbeddings();
    try (NDScope scope = new NDScope()) {
      scope.suppressNotUsedWarning();
      NDArray idArray = owned(manager.create(ids));
      NDArray padArray = padding == null ? manager.ones(new Shape(batch, length)) : owned(manager.create(padding));
      NDArray positions = positions(cache, batch, length);
      int memLength = Math.max(length - lastContextLength, 0);
      List<NDArray> logits = new ArrayList<>();
      int upTo = output == Output.MEMORY_ONLY ? config.lastMemoryLayer() : config.numLayers() - 1;
      for (int beg = 0; beg < memLength; beg += window) {
        int end = Math.min(memLength, beg + window);
        NDArray h = call(cache, slice(idArray, beg, end), slice(padArray, beg, end),
            slice(positions, beg, end), cache.local != null && useCache, upTo);
        collect(h, output, logits);
      }
      if (memLength < length) {
        NDArray h = call(cache, slice(idArray, memLength, length), slice(padArray, memLength, length),
            slice(positions, memLength, length), useCache, upTo);
        collect(h, output, logits);
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

  private void collect(NDArray hidden, Output output, List<NDArray> logits) {
    if (output == Output.MEMORY_ONLY) {
      return;
    }
    if (output == Output.LAST_LOGITS) {
      hidden = hidden.get(new NDIndex(":, -1:, :"));
    }
    logits.add(linear(hidden, lmHead));
  }

  private void validateInput(LongLlamaCache cache, long[][] ids, float[][] padding, int lastContextLength) {
    if (ids.length == 0 || ids.length != cache.batch()) {
      throw new IllegalArgumentException("batch of " + ids.length + " sequences, the cache holds " + cache.batch());
    }
    int length = ids[0].length;
    if (length == 0) {
      throw new IllegalArgumentException("empty input: at least one token id is needed");
    }
    for (int b = 0; b < ids.length; b++) {
      if (ids[b].length != length) {
        throw new IllegalArgumentException("input row " + b + " has " + ids[b].length + " tokens, row 0 has "
            + length + " (pad rows to one length and pass a padding mask)");
      }
      for (int t = 0; t < length; t++) {
        if (ids[b][t] < 0 || ids[b][t] >= config.vocabSize()) {
          throw new IllegalArgumentException("token id " + ids[b][t] + " at row " + b + ", position " + t
              + " is outside the vocabulary [0, " + config.vocabSize() + ")");
        }
      }
    }
    if (padding != null) {
      if (padding.length != ids.length) {
        throw new IllegalArgumentException("padding mask has " + padding.length + " rows, input has " + ids.length);
      }
      for (int b = 0; b < padding.length; b++) {
        if (padding[b].length != length) {
          throw new IllegalArgumentException("padding mask row " + b + " has " + padding[b].length
              + " entries, input has " + length);
        }
        for (float p : padding[b]) {
          if (p != 0f && p != 1f) {
            throw new IllegalArgumentException("padding mask entries must be 0 or 1, got " + p);
          }
        }
      }
    }
    if (lastContextLength < 0) {
      throw new IllegalArgumentException("last_context_length must be >= 0, got " + lastContextLength);
    }
  }

  /** Positions continue after the local cache (max position + 1), or start at 0 without one. */
  private NDArray positions(LongLlamaCache cache, int batch, int length) {
    long[][] pos = new long[batch][length];
    long[] next = new long[batch];
    if (cache.local != null) {
      NDArray max = cache.local[0][2].max(new int[] {1});
      next = max.toLongArray();
    }
    for (int b = 0; b < batch; b++) {
      for (int t = 0; t < length; t++) {
        pos[b][t] = (cache.local != null ? next[b] + 1 : 0) + t;
      }
    }
    return owned(manager.create(pos));
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
  // One model call: LongLlamaModel.forward of the reference

  private NDArray call(LongLlamaCache cache, NDArray ids, NDArray pad, NDArray positions, boolean useCache,
      int upToLayer) {
    long batch = ids.getShape().get(0);
    long length = ids.getShape().get(1);
    long past = cache.localLength();
    NDArray mask2d = cache.local != null ? NDArrays.concat(new NDList(cache.localMask, pad), 1) : pad;
    NDArray mask = decoderMask(mask2d, batch, length, past);
    NDArray h = embed.get(new NDIndex("{}", ids));
    NDArray[][] nextLocal = useCache ? new NDArray[config.numLayers()][] : null;
    for (int l = 0; l <= upToLayer; l++) {
      // each layer in its own scope: its intermediates are freed before the next layer runs
      NDArray[] kept;
      try (NDScope layerScope = new NDScope()) {
        layerScope.suppressNotUsedWarning();
        Layer w = layers[l];
        NDArray x = rmsNorm(h, w.inputNorm());
        NDArray[] pastKv = cache.local != null ? cache.local[l] : null;
        NDArray out = h.add(attention(l, x, mask, positions, pastKv, useCache, cache.memory(), nextLocal));
        x = rmsNorm(out, w.postNorm());
        NDList gu = linear(x, w.gateUp()).split(2, 2);
        out = out.add(linear(silu(gu.get(0)).mul(gu.get(1)), w.down()));
        kept = useCache ? new NDArray[] {out, nextLocal[l][0], nextLocal[l][1], nextLocal[l][2]} : new NDArray[] {out};
        NDScope.unregister(kept);
      }
      for (NDArray a : kept) {
        NDScope.register(a); // back into the scope of this call
      }
      h = kept[0];
    }
    if (useCache) {
      long kept = nextLocal[0][0].getShape().get(2);
      NDArray keptMask = mask2d.get(new NDIndex(":, {}:", mask2d.getShape().get(1) - kept));
      cache.setLocal(nextLocal, keptMask);
    } else {
      cache.setLocal(null, null);
    }
    return upToLayer == config.numLayers() - 1 ? rmsNorm(h, norm) : h;
  }

  /** The reference's causal mask plus padding mask: [B, 1, T, past + T], 0 or MASK_MIN (or -inf). */
  private NDArray decoderMask(NDArray mask2d, long batch, long length, long past) {
    long src = past + length;
    NDArray expanded = mask2d.neg().add(1f).mul(MASK_MIN).reshape(batch, 1, 1, src);
    if (length == 1) {
      return expanded;
    }
    NDArray rows = manager.arange(0, (int) length, 1, DataType.INT64).add(past).reshape(length, 1);
    NDArray cols = manager.arange(0, (int) src, 1, DataType.INT64).reshape(1, src);
    NDArray causal = cols.gt(rows).toType(DataType.FLOAT32, false).mul(MASK_MIN).reshape(1, 1, length, src);
    return expanded.add(causal);
  }

  private NDArray rmsNorm(NDArray x, NDArray weight) {
    NDArray variance = x.square().mean(new int[] {-1}, true);
    // pow(-0.5) is torch.rsqrt, as the reference computes it: the rounding matters for bf16 memory
    return x.mul(variance.add((float) config.rmsNormEps()).pow(-0.5f)).mul(weight);
  }

  /** x / (1 + exp(-x)): torch's silu formula (x * sigmoid(x) rounds differently). */
  private static NDArray silu(NDArray x) {
    return x.div(x.neg().exp().add(1f));
  }

  private static NDArray linear(NDArray x, NDArray weight) {
    return Linear.linear(x, weight).singletonOrThrow();
  }

  /** LongLlamaAttention.forward of the reference, with memory reached through {@link Memory}. */
  private NDArray attention(int l, NDArray x, NDArray mask, NDArray positions, NDArray[] past, boolean useCache,
      Memory memory, NDArray[][] nextLocal) {
    long batch = x.getShape().get(0);
    long length = x.getShape().get(1);
    int heads = config.numHeads();
    int dim = config.headDim();
    NDArray qkv = linear(x, layers[l].qkv()).reshape(batch, length, 3, heads, dim).transpose(2, 0, 3, 1, 4);
    NDArray q = qkv.get(0);
    NDArray k = qkv.get(1);
    NDArray v = qkv.get(2);

    boolean isMem = config.isMemoryLayer(l);
    boolean memNoLocalCache = isMem && past == null && !useCache;
    boolean memAndLocalCache = isMem && useCache;
    boolean positional = !isMem || config.memPositionals();

    NDArray[] update = null;
    if (memNoLocalCache) {
      // the whole window goes to memory after the attention; keys as if at position 0 (= unrotated)
      update = new NDArray[] {round(k), round(v), lastRowMask(mask)};
    }
    if (past != null) {
      long pastLength = past[0].getShape().get(2);
      k = NDArrays.concat(new NDList(past[0], k), 2);
      v = NDArrays.concat(new NDList(past[1], v), 2);
      positions = NDArrays.concat(new NDList(past[2], positions), 1);
      if (k.getShape().get(2) > config.maxPositionEmbeddings()) {
        // the local cache overflows its window: everything before this input leaves it
        if (memAndLocalCache) {
          NDIndex head = new NDIndex(":, :, :{}", pastLength);
          memory.append(l, round(k.get(head)), round(v.get(head)),
              lastRowMask(mask).get(new NDIndex(":, :{}", pastLength)));
        }
        k = k.get(new NDIndex(":, :, {}:", pastLength));
        v = v.get(new NDIndex(":, :, {}:", pastLength));
        positions = positions.get(new NDIndex(":, {}:", pastLength));
        mask = mask.get(new NDIndex("..., {}:", pastLength));
      }
    }
    if (useCache) {
      nextLocal[l] = new NDArray[] {k, v, positions};
    }
    if (positional) {
      NDArray rel = positions.sub(positions.min(new int[] {1}, true));
      // positions in a local context are consecutive, so relative ones are below its length:
      // no device-to-host read of the maximum
      long maxRel = k.getShape().get(2) - 1;
      q = rope.rotate(q, rel.get(new NDIndex(":, {}:", rel.getShape().get(1) - length)), maxRel);
      k = rope.rotate(k, rel, maxRel);
    }
    boolean remembers = isMem && memory.size(l) > 0;
    NDArray out;
    if (remembers && memory.pairsPerQuery() > 0) {
      out = attendPerQueryMemory(l, q, k, v, mask, memory);
    } else {
      out = attend(l, q, k, v, mask, remembers ? memory.retrieve(l, q) : null, isMem);
    }
    out = out.transpose(0, 2, 1, 3).reshape(batch, length, (long) heads * dim);
    out = linear(out, layers[l].o());
    if (update != null) {
      memory.append(l, update[0], update[1], update[2]);
    }
    return out;
  }

  /** The mask row of the last query, [B, src]: the reference's memory mask for those keys. */
  private static NDArray lastRowMask(NDArray mask) {
    long src = mask.getShape().get(3);
    return mask.get(new NDIndex(":, 0, -1, :")).reshape(mask.getShape().get(0), src);
  }

  private NDArray round(NDArray x) {
    return MemRounding.round(x, config.memDType());
  }

  /**
   * Attention with a memory that chooses pairs per query (kNN): the memory is asked for a block of
   * queries at a time (see {@link #retrieveBudget}), and each block's answer is freed once used.
   */
  private NDArray attendPerQueryMemory(int l, NDArray q, NDArray k, NDArray v, NDArray mask, Memory memory) {
    long batch = q.getShape().get(0);
    long length = q.getShape().get(2);
    long perQuery = batch * config.numHeads() * (long) memory.pairsPerQuery() * config.headDim();
    long block = Math.max(1, Math.min(length, retrieveBudget / Math.max(1, perQuery)));
    NDList blocks = new NDList();
    for (long q0 = 0; q0 < length; q0 += block) {
      long q1 = Math.min(length, q0 + block);
      NDArray qb = block == length ? q : q.get(new NDIndex(":, :, {}:{}", q0, q1));
      NDArray mb = block == length ? mask : part(mask, 0, config.numHeads(), q0, q1);
      Memory.Retrieved r = memory.retrieve(l, qb);
      blocks.add(attend(l, qb, k, v, mb, r, true));
      r.keys().close();
      r.values().close();
      r.mask().close();
    }
    return blocks.size() == 1 ? blocks.get(0) : NDArrays.concat(blocks, 2);
  }

  /**
   * Softmax attention over local keys and (if any) memory pairs, in groups of heads and queries
   * ({@code mem_attention_grouping}) so the score matrix of a large memory fits.
   */
  private NDArray attend(int l, NDArray q, NDArray k, NDArray v, NDArray mask, Memory.Retrieved mem,
      boolean isMem) {
    int heads = config.numHeads();
    long length = q.getShape().get(2);
    int groupHeads = heads;
    long groupQueries = length;
    if (isMem && config.memAttentionGrouping() != null) {
      groupHeads = config.memAttentionGrouping()[0];
      groupQueries = config.memAttentionGrouping()[1];
    }
    // score matrices above SCORE_BUDGET floats are computed in blocks of queries (softmax is per query)
    long keys = k.getShape().get(2) + (mem == null ? 0 : mem.keys().getShape().get(mem.perQuery() ? 3 : 2));
    long perQuery = (long) Math.min(groupHeads, heads) * keys * q.getShape().get(0);
    groupQueries = Math.max(1, Math.min(groupQueries, SCORE_BUDGET / Math.max(1, perQuery)));
    float scale = (float) Math.sqrt(config.headDim());
    boolean whole = groupHeads >= heads && groupQueries >= length;
    NDList byHeads = new NDList();
    for (int h0 = 0; h0 < heads; h0 += groupHeads) {
      int h1 = Math.min(heads, h0 + groupHeads);
      NDList byQueries = new NDList();
      for (long q0 = 0; q0 < length; q0 += groupQueries) {
        long q1 = Math.min(length, q0 + groupQueries);
        NDArray qq = whole ? q : part(q, h0, h1, q0, q1);
        NDArray kk = whole ? k : part(k, h0, h1, 0, -1);
        NDArray vv = whole ? v : part(v, h0, h1, 0, -1);
        NDArray mm = whole ? mask : part(mask, h0, h1, q0, q1);
        NDArray scores = maskedScores(qq.matMul(kk.swapAxes(2, 3)), scale, mm);
        NDArray o;
        if (mem == null) {
          NDArray weights = scores.softmax(-1);
          scores.close();
          o = weights.matMul(vv);
          weights.close();
        } else {
          NDArray mk = mem.perQuery() ? part(mem.keys(), h0, h1, q0, q1) : part(mem.keys(), h0, h1, 0, -1);
          NDArray mv = mem.perQuery() ? part(mem.values(), h0, h1, q0, q1) : part(mem.values(), h0, h1, 0, -1);
          NDArray memScores = maskedScores(mem.perQuery()
              ? qq.expandDims(3).mul(mk).sum(new int[] {-1})
              : qq.matMul(mk.swapAxes(2, 3)), scale, part(mem.mask(), h0, h1, q0, q1));
          long local = scores.getShape().get(3);
          NDArray joined = NDArrays.concat(new NDList(scores, memScores), -1);
          scores.close();
          memScores.close();
          NDArray weights = joined.softmax(-1);
          joined.close();
          NDArray wLocal = weights.get(new NDIndex("..., :{}", local));
          NDArray wMem = weights.get(new NDIndex("..., {}:", local));
          NDArray fromMem = mem.perQuery()
              ? wMem.expandDims(-1).mul(mv).sum(new int[] {-2})
              : wMem.matMul(mv);
          o = wLocal.matMul(vv).addi(fromMem);
          weights.close();
          fromMem.close();
        }
        byQueries.add(o);
      }
      byHeads.add(byQueries.size() == 1 ? byQueries.get(0) : NDArrays.concat(byQueries, 2));
    }
    return byHeads.size() == 1 ? byHeads.get(0) : NDArrays.concat(byHeads, 1);
  }

  /** (q.k) / sqrt(d) + mask, floored at -1e6 as the reference does; the raw product is reused in place. */
  private static NDArray maskedScores(NDArray product, float scale, NDArray mask) {
    product.divi(scale).addi(mask);
    NDArray floored = product.maximum(SCORE_FLOOR);
    product.close();
    return floored;
  }

  /** Slices heads [h0, h1) (dim 1) and queries [q0, q1) (dim 2, q1 = -1: all) where a dim is not broadcast. */
  private static NDArray part(NDArray a, int h0, int h1, long q0, long q1) {
    Shape s = a.getShape();
    String heads = s.get(1) == 1 ? ":" : h0 + ":" + h1;
    String queries = q1 < 0 || s.get(2) == 1 ? ":" : q0 + ":" + q1;
    return a.get(new NDIndex(":, " + heads + ", " + queries));
  }

  @Override
  public void close() {
    manager.close();
  }
}
