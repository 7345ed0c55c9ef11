package io.longmem.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.longmem.io.InputException;
import io.longmem.model.compute.Bf16Matrix;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.compute.Projection;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.CheckpointException;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.StoredTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.ShortBuffer;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A checkpoint's weights on a device. In float32 compute F32 tensors are used in place (zero-copy
 * on the memory-mapped file), F16 and BF16 ones are widened once here. In bfloat16 compute the
 * large matrices (q/k/v, o, gate/up, down, lm_head) are held only as {@link Bf16Matrix}es, packed
 * once; embeddings and norms stay float32. q/k/v and gate/up projections are fused into one matrix
 * each, so every layer does three big GEMMs. Owns the NDManager that holds them and the packed
 * matrices; closing it frees both.
 */
public final class Weights implements AutoCloseable {
  /** A layer's fused q/k/v projection [3 * hidden, hidden] (the training parameter's name). */
  public static final String QKV = "self_attn.qkv_proj.weight";
  /** A layer's fused gate/up projection [2 * intermediate, hidden]. */
  public static final String GATE_UP = "mlp.gate_up_proj.weight";

  /** One decoder layer's weights. */
  record Layer(NDArray inputNorm, Projection qkv, Projection o, NDArray postNorm, Projection gateUp,
      Projection down) {}

  private final Checkpoint checkpoint; // keeps the memory-mapped weights alive
  private final Device device;
  private final ComputeDType compute;
  private final NDManager manager;
  /** The bfloat16 matrices, closed with the weights. */
  private final List<Bf16Matrix> packed = new ArrayList<>();
  /** Direct buffers that weight arrays use as storage (DJL does not keep them reachable). */
  private final Map<NDArray, ByteBuffer> pinned = new IdentityHashMap<>();
  /** The float32 arrays by parameter name (q/k/v and gate/up fused: {@link #QKV}, {@link #GATE_UP}). */
  private final Map<String, NDArray> named = new LinkedHashMap<>();
  private final NDArray embed;
  private final NDArray norm;
  private final Projection lmHead;
  private final Layer[] layers;

  /** Loads every tensor that a model of {@code config}'s shapes needs, for float32 compute. */
  public Weights(Checkpoint checkpoint, LongLlamaConfig config, Device device) {
    this(checkpoint, config, device, ComputeDType.FLOAT32);
  }

  /** Loads every tensor that a model of {@code config}'s shapes needs, for the given compute. */
  public Weights(Checkpoint checkpoint, LongLlamaConfig config, Device device, ComputeDType compute) {
    if (compute == ComputeDType.BFLOAT16 && !device.equals(Device.cpu())) {
      throw new InputException("--compute-dtype bfloat16 runs on the CPU (oneDNN), not on " + device);
    }
    this.checkpoint = checkpoint;
    this.device = device;
    this.compute = compute;
    this.manager = NDManager.newBaseManager(device);
    try {
      embed = named("model.embed_tokens.weight", load("model.embed_tokens.weight"));
      norm = named("model.norm.weight", load("model.norm.weight"));
      lmHead = projection("lm_head.weight", "lm_head.weight");
      layers = new Layer[config.numLayers()];
      for (int l = 0; l < layers.length; l++) {
        String p = "model.layers." + l + ".";
        layers[l] = new Layer(
            named(p + "input_layernorm.weight", load(p + "input_layernorm.weight")),
            projection(p + QKV, p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"),
            projection(p + "self_attn.o_proj.weight", p + "self_attn.o_proj.weight"),
            named(p + "post_attention_layernorm.weight", load(p + "post_attention_layernorm.weight")),
            projection(p + GATE_UP, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
            projection(p + "mlp.down_proj.weight", p + "mlp.down_proj.weight"));
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  ComputeDType compute() {
    return compute;
  }

  Checkpoint checkpoint() {
    return checkpoint;
  }

  Device device() {
    return device;
  }

  NDManager manager() {
    return manager;
  }

  /** [vocab, hidden] token embeddings. */
  NDArray embed() {
    return embed;
  }

  /** The final RMSNorm's weight. */
  NDArray norm() {
    return norm;
  }

  /** [vocab, hidden] output projection. */
  Projection lmHead() {
    return lmHead;
  }

  Layer layer(int l) {
    return layers[l];
  }

  /** Bytes of the projection weights (what one decode step reads). */
  long projectionBytes() {
    long b = lmHead.bytes();
    for (Layer l : layers) {
      b += l.qkv().bytes() + l.o().bytes() + l.gateUp().bytes() + l.down().bytes();
    }
    return b;
  }

  /**
   * Weights of a model being trained: {@code params} by parameter name (see {@link #parameters}),
   * on {@code manager}, which the weights own from now on. Float32 or float64 compute by DJL.
   */
  public static Weights of(LongLlamaConfig config, NDManager manager, Map<String, NDArray> params) {
    return new Weights(config, manager, params);
  }

  private Weights(LongLlamaConfig config, NDManager manager, Map<String, NDArray> params) {
    this.checkpoint = null;
    this.device = manager.getDevice();
    this.compute = ComputeDType.FLOAT32;
    this.manager = manager;
    embed = named("model.embed_tokens.weight", param(params, "model.embed_tokens.weight"));
    norm = named("model.norm.weight", param(params, "model.norm.weight"));
    lmHead = Projection.float32(named("lm_head.weight", param(params, "lm_head.weight")));
    layers = new Layer[config.numLayers()];
    for (int l = 0; l < layers.length; l++) {
      String p = "model.layers." + l + ".";
      NDArray[] a = new NDArray[6];
      String[] names = {"input_layernorm.weight", QKV, "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          GATE_UP, "mlp.down_proj.weight"};
      for (int i = 0; i < names.length; i++) {
        a[i] = named(p + names[i], param(params, p + names[i]));
      }
      layers[l] = new Layer(a[0], Projection.float32(a[1]), Projection.float32(a[2]), a[3], Projection.float32(a[4]),
          Projection.float32(a[5]));
    }
  }

  private static NDArray param(Map<String, NDArray> params, String name) {
    NDArray a = params.get(name);
    if (a == null) {
      throw new CheckpointException("no parameter " + name);
    }
    return a;
  }

  /**
   * The arrays by parameter name, in a fixed order: HF tensor names, except that each layer's
   * q/k/v and gate/up projections are one fused array ({@link #QKV}, {@link #GATE_UP}). What
   * training updates; complete in float32 compute only (bfloat16 packs the matrices natively).
   */
  public Map<String, NDArray> parameters() {
    return java.util.Collections.unmodifiableMap(named);
  }

  /** The parameters as Hugging Face tensors: fused projections split back into q/k/v and gate/up (views). */
  public Map<String, NDArray> huggingFaceTensors() {
    Map<String, NDArray> out = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : named.entrySet()) {
      String n = e.getKey();
      if (n.endsWith(QKV)) {
        String p = n.substring(0, n.length() - QKV.length()) + "self_attn.";
        NDList qkv = e.getValue().split(3, 0);
        out.put(p + "q_proj.weight", qkv.get(0));
        out.put(p + "k_proj.weight", qkv.get(1));
        out.put(p + "v_proj.weight", qkv.get(2));
      } else if (n.endsWith(GATE_UP)) {
        String p = n.substring(0, n.length() - GATE_UP.length()) + "mlp.";
        NDList gu = e.getValue().split(2, 0);
        out.put(p + "gate_proj.weight", gu.get(0));
        out.put(p + "up_proj.weight", gu.get(1));
      } else {
        out.put(n, e.getValue());
      }
    }
    return out;
  }

  private NDArray named(String name, NDArray a) {
    named.put(name, a);
    return a;
  }

  /** The named tensors stacked along dim 0 (fused), as the compute dtype multiplies them. */
  private Projection projection(String param, String... names) {
    if (compute == ComputeDType.BFLOAT16) {
      List<StoredTensor> parts = new ArrayList<>();
      for (String n : names) {
        parts.add(checkpoint.tensor(n));
      }
      Bf16Matrix m = Bf16Matrix.of(parts);
      packed.add(m);
      return m;
    }
    return Projection.float32(named(param, names.length == 1 ? load(names[0]) : fuse(names)));
  }

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
    ShortBuffer src = t.data().asShortBuffer();
    long n = t.numel();
    if (n * 4 > Integer.MAX_VALUE) {
      throw new CheckpointException(t.file() + ": tensor " + t.name() + " is larger than 2 GiB as float32");
    }
    ByteBuffer dst = ByteBuffer.allocateDirect((int) n * 4).order(ByteOrder.nativeOrder());
    IntBuffer out = dst.asIntBuffer();
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

  /** The tensors concatenated along dim 0 (output features): one matrix, one GEMM. */
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

  @Override
  public void close() {
    manager.close();
    pinned.clear();
    named.clear();
    for (Bf16Matrix m : packed) {
      m.close();
    }
    packed.clear();
  }
}
