package io.longmem.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import io.longmem.model.LongLlamaCache.Context;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.compute.Bf16Attention;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.memory.Memory;

/**
 * LongLlamaAttention.forward of the reference, with memory reached through {@link Memory}: every
 * query attends to its local context (the input, after the local cache) and, in a memory layer,
 * to the (key, value) pairs memory gives it, in one softmax. Keys go to memory unrotated (as if at
 * position 0) and rounded to {@code mem_dtype}; positions are relative to the local context.
 */
final class Attention {
  /** The reference clamps attention scores at -1e6 after masking. */
  static final float SCORE_FLOOR = -1e6f;
  /** Fewest queries for which the attention's matmuls run in bfloat16 (when the compute dtype is). */
  static final long BF16_MIN_QUERIES = 16;
  /**
   * Largest attention score block (floats) computed at once; bounds memory for long windows. Not
   * smaller: each block's matmul repacks all the keys (at 16 MB blocks MKL's packing took 16% of
   * float32 prefill).
   */
  static final long SCORE_BUDGET = 1L << 25;

  /** What a layer attends to and what it writes to memory. */
  enum Mode {
    /** A layer without memory: the local context only. */
    LOCAL,
    /**
     * A memory layer reading input into memory (no local cache): the window attends to memory and
     * to itself, then all of its pairs go to memory.
     */
    MEMORY_READ,
    /**
     * A memory layer with a local cache: memory plus the local context, which overflows into
     * memory a window at a time (everything before the input leaves once it exceeds a window).
     */
    MEMORY_CACHED,
    /**
     * A memory layer called without a cache on a cache that holds local context: memory plus that
     * context; nothing is written (the local cache is dropped after the call).
     */
    MEMORY_LOOKUP,
    /**
     * A memory layer in training (FoT): the batch entry's local context plus the keys and values
     * of other entries of the batch ({@link CrossBatch}), in one softmax; nothing is remembered.
     */
    CROSS_BATCH;

    /** The mode of layer {@code l} in a call that has (or not) a local cache and keeps (or not) one. */
    static Mode of(LongLlamaConfig config, int l, boolean hasLocal, boolean useCache) {
      if (!config.isMemoryLayer(l)) {
        return LOCAL;
      }
      return useCache ? MEMORY_CACHED : hasLocal ? MEMORY_LOOKUP : MEMORY_READ;
    }

    boolean readsMemory() {
      return this != LOCAL;
    }
  }

  /** A layer's output [B, L, hidden] and the local context it attended to (what a cache keeps). */
  record Result(NDArray out, Context local) {}

  private final LongLlamaConfig config;
  private final Weights weights;
  private final Rope rope;
  /** Whether q.k^T and weights.v of prefill-sized inputs run in bfloat16 (compute dtype bfloat16). */
  private final boolean bf16;
  /**
   * sqrt(head_dim) and the score floor as arrays that libtorch owns. An op with a Java number makes
   * a temporary array over a Java buffer and closes it after the call; autograd keeps the divisor
   * and the floor for backward (training) and would read a freed buffer.
   */
  private final NDArray scale;
  private final NDArray floor;
  /**
   * Floats of keys (and as many of values) a per-query memory answer may hold at once: a 2048-token
   * window asking 32 heads x top-128 x head_dim 100 would need 3.4 GB each, so such windows ask
   * the memory for a block of queries at a time. Tests lower it to exercise the blocks.
   */
  private volatile long retrieveBudget = 1L << 24;

  Attention(LongLlamaConfig config, Weights weights) {
    this.config = config;
    this.weights = weights;
    this.bf16 = weights.compute() == ComputeDType.BFLOAT16 && Bf16Attention.enabled();
    this.rope = new Rope(weights.manager(), config.headDim(), config.ropeTheta(), config.maxPositionEmbeddings(),
        bf16 && !weights.manager().getDevice().isGpu());
    this.scale = constant(weights.manager(), (float) Math.sqrt(config.headDim()));
    this.floor = constant(weights.manager(), SCORE_FLOOR);
  }

  /** A float32 scalar array that libtorch owns (not a view of a Java buffer). */
  static NDArray constant(ai.djl.ndarray.NDManager manager, float value) {
    NDArray wrapped = manager.create(value);
    NDArray owned = wrapped.duplicate();
    wrapped.close();
    return owned;
  }

  void retrieveBudget(long floats) {
    retrieveBudget = floats;
  }

  /**
   * One attention layer.
   *
   * @param x [B, L, hidden] the normed input
   * @param mask [B, 1, L, T + L] additive causal and padding mask over past and input
   * @param positions [B, L] the input's positions
   * @param past the layer's local cache, or null
   */
  Result forward(int l, Mode mode, NDArray x, NDArray mask, NDArray positions, Context past, Memory memory) {
    return forward(l, mode, x, mask, positions, past, memory, null);
  }

  /**
   * One attention layer; in mode {@link Mode#CROSS_BATCH} {@code crossBatch} says which other
   * entries each entry sees (their keys unrotated: positioned as if first in the context).
   */
  Result forward(int l, Mode mode, NDArray x, NDArray mask, NDArray positions, Context past, Memory memory,
      CrossBatch crossBatch) {
    long batch = x.getShape().get(0);
    long length = x.getShape().get(1);
    int heads = config.numHeads();
    int dim = config.headDim();
    NDArray qkv = qkv(l, x);
    NDArray q = qkv.get(0);
    Context input = new Context(qkv.get(1), qkv.get(2), positions);
    Context local = input;
    if (past != null) {
      long pastLength = past.length();
      local = past.then(input);
      if (local.length() > config.maxPositionEmbeddings()) {
        // the local cache overflows its window: everything before this input leaves it
        if (mode == Mode.MEMORY_CACHED) {
          remember(l, memory, local.before(pastLength), lastRowMask(mask).get(new NDIndex(":, :{}", pastLength)));
        }
        local = local.from(pastLength);
        mask = mask.get(new NDIndex("..., {}:", pastLength));
      }
    }
    NDArray k = local.keys();
    if (!mode.readsMemory() || config.memPositionals()) {
      NDArray rel = local.positions().sub(local.positions().min(new int[] {1}, true));
      // positions in a local context are consecutive, so relative ones are below its length:
      // no device-to-host read of the maximum
      long maxRel = local.length() - 1;
      q = rope.rotate(q, rel.get(new NDIndex(":, {}:", rel.getShape().get(1) - length)), maxRel);
      k = rope.rotate(k, rel, maxRel);
    }
    NDArray out;
    boolean remembers = mode != Mode.CROSS_BATCH && mode.readsMemory() && memory.size(l) > 0;
    if (mode == Mode.CROSS_BATCH) {
      out = attend(q, k, local.values(), mask, crossBatch.pairs(input.keys(), input.values()), true);
    } else if (remembers && memory.pairsPerQuery() > 0) {
      out = attendPerQueryMemory(l, q, k, local.values(), mask, memory);
    } else {
      out = attend(q, k, local.values(), mask, remembers ? memory.retrieve(l, q) : null, mode.readsMemory());
    }
    out = out.transpose(0, 2, 1, 3).reshape(batch, length, (long) heads * dim);
    out = weights.layer(l).o().apply(out);
    if (mode == Mode.MEMORY_READ) {
      // the whole window goes to memory after the attention
      remember(l, memory, input, lastRowMask(mask));
    }
    return new Result(out, local);
  }

  /**
   * The last memory layer of a read that stops there ({@code MEMORY_ONLY}): nothing uses its
   * attention's output, so only its keys and values are computed and go to memory. The memory is
   * the same as after {@link #forward}, and reading it no longer attends to everything read
   * before: one memory layer (or the last one) costs linear time in the document's length.
   */
  void rememberOnly(int l, NDArray x, NDArray mask, NDArray positions, Memory memory) {
    NDArray kv = qkv(l, x);
    remember(l, memory, new Context(kv.get(1), kv.get(2), positions), lastRowMask(mask));
  }

  /** The fused projection of x [B, L, hidden] as q, k, v stacked: [3, B, heads, L, head_dim]. */
  private NDArray qkv(int l, NDArray x) {
    return weights.layer(l).qkv().apply(x).reshape(x.getShape().get(0), x.getShape().get(1), 3, config.numHeads(),
        config.headDim()).transpose(2, 0, 3, 1, 4);
  }

  /** Appends unrotated keys (= rotated as if at position 0) and values, rounded to mem_dtype. */
  private void remember(int l, Memory memory, Context pairs, NDArray mask) {
    memory.append(l, round(pairs.keys()), round(pairs.values()), mask);
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
      blocks.add(attend(qb, k, v, mb, r, true));
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
  private NDArray attend(NDArray q, NDArray k, NDArray v, NDArray mask, Memory.Retrieved mem, boolean isMem) {
    int heads = config.numHeads();
    long length = q.getShape().get(2);
    if (bf16 && length >= BF16_MIN_QUERIES && (mem == null || sharedBy(mem, q))) {
      return attendBf16(q, k, v, mask, mem);
    }
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
    boolean whole = groupHeads >= heads && groupQueries >= length;
    boolean lowp = bf16 && length >= BF16_MIN_QUERIES;
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
        NDArray scores = maskedScores(matMul(qq, kk, true, lowp), mm);
        byQueries.add(mem == null ? softmaxLocal(scores, vv, lowp)
            : softmaxWithMemory(scores, qq, vv, part(mem, h0, h1, q0, q1), lowp));
      }
      byHeads.add(byQueries.size() == 1 ? byQueries.get(0) : NDArrays.concat(byQueries, 2));
    }
    return byHeads.size() == 1 ? byHeads.get(0) : NDArrays.concat(byHeads, 1);
  }

  /** Whether memory pairs are the same for every query and have q's batch and head dims. */
  private static boolean sharedBy(Memory.Retrieved mem, NDArray q) {
    Shape s = mem.keys().getShape();
    return !mem.perQuery() && s.get(0) == q.getShape().get(0) && s.get(1) == q.getShape().get(1);
  }

  /**
   * Prefill's attention in bfloat16 compute: local keys and memory pairs joined into one key set
   * (with their masks), then one native pass ({@link Bf16Attention#attend}) that never holds the
   * score matrix, so needs no grouping by heads or queries.
   */
  private NDArray attendBf16(NDArray q, NDArray k, NDArray v, NDArray mask, Memory.Retrieved mem) {
    float scale = (float) Math.sqrt(config.headDim());
    if (mem == null) {
      return Bf16Attention.attend(q, k, v, mask, scale, SCORE_FLOOR);
    }
    long batch = q.getShape().get(0);
    long length = q.getShape().get(2);
    long maskHeads = Math.max(mask.getShape().get(1), mem.mask().getShape().get(1));
    NDArray keys = NDArrays.concat(new NDList(k, mem.keys()), 2);
    NDArray values = NDArrays.concat(new NDList(v, mem.values()), 2);
    NDArray joinedMask = NDArrays.concat(new NDList(
        mask.broadcast(batch, maskHeads, length, k.getShape().get(2)),
        mem.mask().broadcast(batch, maskHeads, length, mem.keys().getShape().get(2))), 3);
    NDArray out = Bf16Attention.attend(q, keys, values, joinedMask, scale, SCORE_FLOOR);
    keys.close();
    values.close();
    joinedMask.close();
    return out;
  }

  /** a @ b (or a @ b^T), in bfloat16 when {@code lowp} and the batch dims agree (not broadcast). */
  private static NDArray matMul(NDArray a, NDArray b, boolean transB, boolean lowp) {
    if (lowp && a.getShape().get(0) == b.getShape().get(0) && a.getShape().get(1) == b.getShape().get(1)) {
      return Bf16Attention.matMul(a, b, transB);
    }
    return a.matMul(transB ? b.swapAxes(2, 3) : b);
  }

  private static NDArray softmaxLocal(NDArray scores, NDArray v, boolean lowp) {
    NDArray weights = scores.softmax(-1);
    scores.close();
    NDArray o = matMul(weights, v, false, lowp);
    weights.close();
    return o;
  }

  /** One softmax over local scores and memory scores, then the weighted sum of both value sets. */
  private NDArray softmaxWithMemory(NDArray scores, NDArray q, NDArray v, Memory.Retrieved mem, boolean lowp) {
    NDArray memScores = maskedScores(mem.perQuery()
        ? q.expandDims(3).mul(mem.keys()).sum(new int[] {-1})
        : matMul(q, mem.keys(), true, lowp), mem.mask());
    long local = scores.getShape().get(3);
    NDArray joined = NDArrays.concat(new NDList(scores, memScores), -1);
    scores.close();
    memScores.close();
    NDArray weights = joined.softmax(-1);
    joined.close();
    NDArray wLocal = weights.get(new NDIndex("..., :{}", local));
    NDArray wMem = weights.get(new NDIndex("..., {}:", local));
    NDArray fromMem = mem.perQuery()
        ? wMem.expandDims(-1).mul(mem.values()).sum(new int[] {-2})
        : matMul(wMem, mem.values(), false, lowp);
    NDArray o = matMul(wLocal, v, false, lowp).addi(fromMem);
    weights.close();
    fromMem.close();
    return o;
  }

  /** (q.k) / sqrt(d) + mask, floored at -1e6 as the reference does; the raw product is reused in place. */
  private NDArray maskedScores(NDArray product, NDArray mask) {
    product.divi(scale).addi(mask);
    NDArray floored = product.maximum(floor);
    product.close();
    return floored;
  }

  /** A group's memory pairs: heads [h0, h1) and, when chosen per query, queries [q0, q1). */
  private static Memory.Retrieved part(Memory.Retrieved mem, int h0, int h1, long q0, long q1) {
    long k1 = mem.perQuery() ? q1 : -1;
    return new Memory.Retrieved(part(mem.keys(), h0, h1, q0, k1), part(mem.values(), h0, h1, q0, k1),
        part(mem.mask(), h0, h1, q0, q1));
  }

  /** Slices heads [h0, h1) (dim 1) and queries [q0, q1) (dim 2, q1 = -1: all) where a dim is not broadcast. */
  private static NDArray part(NDArray a, int h0, int h1, long q0, long q1) {
    Shape s = a.getShape();
    String heads = s.get(1) == 1 ? ":" : h0 + ":" + h1;
    String queries = q1 < 0 || s.get(2) == 1 ? ":" : q0 + ":" + q1;
    return a.get(new NDIndex(":, " + heads + ", " + queries));
  }
}
