package io.longmem.train;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.longmem.io.InputException;
import io.longmem.model.checkpoint.LongLlamaConfig;
import java.util.List;

/**
 * The config.json of a trained model: every field the reference {@code LongLlamaConfig} reads
 * (so the published PyTorch implementation loads it too), and new small configs from shapes.
 */
public final class HfConfig {
  /** The fields the reference's LongLlamaConfig.__init__ takes, all written. */
  public static final List<String> REFERENCE_FIELDS = List.of("vocab_size", "hidden_size", "intermediate_size",
      "num_hidden_layers", "num_attention_heads", "hidden_act", "max_position_embeddings", "initializer_range",
      "rms_norm_eps", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings",
      "rope_theta", "rope_scaling", "last_context_length", "mem_layers", "mem_positionals", "mem_dtype",
      "mem_attention_grouping", "torch_attention", "gradient_checkpoint_every_ith");

  private HfConfig() {}

  /**
   * A new model's config; memory layers in LongLLaMA-3B's proportion when none are given
   * ({@link #defaultMemLayers}).
   */
  public static LongLlamaConfig newModel(int vocab, int hidden, int heads, int intermediate, int layers, int window,
      List<Integer> memLayers) {
    return newModel(vocab, hidden, heads, intermediate, layers, window, memLayers, true);
  }

  /**
   * @param memPositionals the reference's {@code mem_positionals}: false leaves memory layers without
   *     rotary positions, locally too, so what such a layer learns to find in its own window it finds
   *     the same way in memory (where every key is positioned as if first)
   */
  public static LongLlamaConfig newModel(int vocab, int hidden, int heads, int intermediate, int layers, int window,
      List<Integer> memLayers, boolean memPositionals) {
    if (memLayers == null || memLayers.isEmpty()) {
      memLayers = defaultMemLayers(layers);
    }
    JsonObject o = new JsonObject();
    o.addProperty("model_type", "longllama");
    o.addProperty("vocab_size", vocab);
    o.addProperty("hidden_size", hidden);
    o.addProperty("num_attention_heads", heads);
    o.addProperty("intermediate_size", intermediate);
    o.addProperty("num_hidden_layers", layers);
    o.addProperty("max_position_embeddings", window);
    o.addProperty("last_context_length", Math.max(1, window / 2));
    JsonArray mem = new JsonArray();
    memLayers.forEach(mem::add);
    o.add("mem_layers", mem);
    o.addProperty("mem_positionals", memPositionals);
    return LongLlamaConfig.fromJson(o, "new model");
  }

  /**
   * LongLLaMA-3B's proportion: 3 memory layers of 26 (6, 12, 18). A smaller model gets
   * round(layers * 3 / 26) of them, at least one, at those relative depths: one is the middle
   * one (12/26), two the outer ones (6/26 and 18/26).
   */
  public static List<Integer> defaultMemLayers(int layers) {
    if (layers < 1) {
      throw new InputException("--layers must be >= 1, got " + layers);
    }
    int count = Math.max(1, Math.min(3, (int) Math.round(layers * 3 / 26.0)));
    int[] at = count == 1 ? new int[] {12} : count == 2 ? new int[] {6, 18} : new int[] {6, 12, 18};
    java.util.TreeSet<Integer> s = new java.util.TreeSet<>();
    for (int f : at) {
      s.add(Math.min(layers - 1, (int) Math.round(f * layers / 26.0)));
    }
    return List.copyOf(s);
  }

  /** config.json of a model with this config, as the reference and longmem's loader read it. */
  public static JsonObject json(LongLlamaConfig c, String torchDtype) {
    JsonObject o = new JsonObject();
    JsonArray arch = new JsonArray();
    arch.add("LongLlamaForCausalLM");
    o.add("architectures", arch);
    o.addProperty("model_type", "longllama");
    o.addProperty("vocab_size", c.vocabSize());
    o.addProperty("hidden_size", c.hiddenSize());
    o.addProperty("intermediate_size", c.intermediateSize());
    o.addProperty("num_hidden_layers", c.numLayers());
    o.addProperty("num_attention_heads", c.numHeads());
    o.addProperty("hidden_act", "silu");
    o.addProperty("max_position_embeddings", c.maxPositionEmbeddings());
    o.addProperty("initializer_range", Init.STD);
    o.addProperty("rms_norm_eps", c.rmsNormEps());
    o.addProperty("use_cache", true);
    o.addProperty("pad_token_id", c.padTokenId());
    o.addProperty("bos_token_id", c.bosTokenId());
    o.addProperty("eos_token_id", c.eosTokenId());
    o.addProperty("tie_word_embeddings", c.tieWordEmbeddings());
    o.addProperty("rope_theta", c.ropeTheta());
    o.add("rope_scaling", com.google.gson.JsonNull.INSTANCE);
    o.addProperty("last_context_length", c.lastContextLength());
    JsonArray mem = new JsonArray();
    c.memLayers().forEach(mem::add);
    o.add("mem_layers", mem);
    o.addProperty("mem_positionals", c.memPositionals());
    o.addProperty("mem_dtype", c.memDType().pythonName());
    if (c.memAttentionGrouping() == null) {
      o.add("mem_attention_grouping", com.google.gson.JsonNull.INSTANCE);
    } else {
      JsonArray g = new JsonArray();
      for (int v : c.memAttentionGrouping()) {
        g.add(v);
      }
      o.add("mem_attention_grouping", g);
    }
    o.addProperty("torch_attention", false);
    o.addProperty("gradient_checkpoint_every_ith", 1);
    o.addProperty("torch_dtype", torchDtype);
    return o;
  }

  public static String text(LongLlamaConfig c, String torchDtype) {
    return new GsonBuilder().setPrettyPrinting().serializeNulls().create().toJson(json(c, torchDtype));
  }
}
