package io.longmem.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.longmem.model.LongLlama;
import io.longmem.model.Weights;
import io.longmem.model.checkpoint.LongLlamaConfig;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Trainable parameters: a new model's (LLaMA's initialisation: normal(0, 0.02) matrices, norms of
 * ones, drawn from a seeded Java generator so a run repeats on any engine) or a copy of a loaded
 * model's, each array requiring gradients.
 */
public final class Init {
  /** initializer_range of the reference config. */
  public static final double STD = 0.02;

  private Init() {}

  /** A new model of {@code config}, its weights on {@code manager} (owned by the model from now on). */
  public static LongLlama fresh(LongLlamaConfig config, NDManager manager, DataType type, long seed) {
    return fresh(config, manager, type, seed, STD);
  }

  /**
   * As {@link #fresh(LongLlamaConfig, NDManager, DataType, long)} with matrices drawn with standard
   * deviation {@code std}: 0.02 is LLaMA's for hidden sizes in the thousands; a small model's
   * attention starts nearly uniform with it, and circuits that need sharp attention (a lookup) form
   * later.
   */
  public static LongLlama fresh(LongLlamaConfig config, NDManager manager, DataType type, long seed, double std) {
    if (!(std > 0 && std < 1)) {
      throw new io.longmem.io.InputException("the initial standard deviation must be in (0, 1), got " + std);
    }
    SplittableRandom random = new SplittableRandom(seed);
    Map<String, NDArray> params = new LinkedHashMap<>();
    int h = config.hiddenSize();
    int i = config.intermediateSize();
    params.put("model.embed_tokens.weight", normal(manager, random, std, type, config.vocabSize(), h));
    for (int l = 0; l < config.numLayers(); l++) {
      String p = "model.layers." + l + ".";
      params.put(p + "input_layernorm.weight", ones(manager, type, h));
      params.put(p + Weights.QKV, normal(manager, random, std, type, 3 * h, h));
      params.put(p + "self_attn.o_proj.weight", normal(manager, random, std, type, h, h));
      params.put(p + "post_attention_layernorm.weight", ones(manager, type, h));
      params.put(p + Weights.GATE_UP, normal(manager, random, std, type, 2 * i, h));
      params.put(p + "mlp.down_proj.weight", normal(manager, random, std, type, h, i));
    }
    params.put("model.norm.weight", ones(manager, type, h));
    params.put("lm_head.weight", normal(manager, random, std, type, config.vocabSize(), h));
    return trainable(config, manager, params);
  }

  /** A trainable copy of a loaded model's parameters, in {@code type}, on {@code manager}. */
  public static LongLlama copy(LongLlama loaded, NDManager manager, DataType type) {
    Map<String, NDArray> params = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : loaded.parameters().entrySet()) {
      NDArray own = e.getValue().toType(type, true).duplicate(); // own storage, not the mapped file's
      own.attach(manager);
      params.put(e.getKey(), own);
    }
    return trainable(loaded.config(), manager, params);
  }

  private static LongLlama trainable(LongLlamaConfig config, NDManager manager, Map<String, NDArray> params) {
    for (NDArray a : params.values()) {
      a.setRequiresGradient(true);
    }
    return LongLlama.of(config, Weights.of(config, manager, params));
  }

  private static NDArray normal(NDManager m, SplittableRandom r, double std, DataType type, long rows, long cols) {
    double[] v = new double[Math.toIntExact(rows * cols)];
    for (int j = 0; j < v.length; j++) {
      v[j] = gaussian(r) * std;
    }
    NDArray d = m.create(v, new Shape(rows, cols));
    // a copy libtorch owns (the created array is a view of a Java direct buffer), in the type asked
    NDArray out = type == DataType.FLOAT64 ? d.duplicate() : d.toType(type, true);
    d.close();
    return out;
  }

  private static NDArray ones(NDManager m, DataType type, long n) {
    return m.ones(new Shape(n), type);
  }

  /** Box-Muller from the seeded generator (SplittableRandom has no nextGaussian on Java 17). */
  private static double gaussian(SplittableRandom r) {
    double u = 1.0 - r.nextDouble();
    double v = r.nextDouble();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}
