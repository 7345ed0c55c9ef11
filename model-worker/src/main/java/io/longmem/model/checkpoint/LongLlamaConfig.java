package io.longmem.model.checkpoint;

import io.longmem.io.InputException;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The fields of a Hugging Face {@code config.json} that LongLLaMA's forward pass depends on.
 *
 * <p>Defaults are those of the reference {@code LongLlamaConfig}; a plain LLaMA config (no {@code
 * mem_layers}) loads as a model without memory layers. Everything the forward pass cannot honour
 * (grouped-query attention, rope scaling, another activation) is refused here, by field name,
 * rather than computed wrongly later.
 */
public record LongLlamaConfig(
    String modelType,
    int vocabSize,
    int hiddenSize,
    int intermediateSize,
    int numLayers,
    int numHeads,
    int maxPositionEmbeddings,
    double rmsNormEps,
    double ropeTheta,
    List<Integer> memLayers,
    MemDType memDType,
    boolean memPositionals,
    int[] memAttentionGrouping,
    int lastContextLength,
    int bosTokenId,
    int eosTokenId,
    int padTokenId,
    boolean tieWordEmbeddings) {

  /** Largest vocab_size accepted: 2^24 (real vocabularies stay below 2^18). */
  public static final int MAX_VOCAB = 1 << 24;
  /** Largest hidden_size accepted: 2^16. */
  public static final int MAX_HIDDEN = 1 << 16;
  /** Largest intermediate_size accepted: 2^18. */
  public static final int MAX_INTERMEDIATE = 1 << 18;
  /** Largest num_hidden_layers and num_attention_heads accepted. */
  public static final int MAX_LAYERS = 1024;
  public static final int MAX_HEADS = 1024;
  /**
   * Largest max_position_embeddings (and last_context_length) accepted: 2^20. The rotary table of
   * every layer is sized by it before any weight is read, so a wild value must fail here.
   */
  public static final int MAX_POSITIONS = 1 << 20;

  public LongLlamaConfig {
    memLayers = List.copyOf(memLayers);
    within("vocab_size", vocabSize, 1, MAX_VOCAB);
    within("hidden_size", hiddenSize, 1, MAX_HIDDEN);
    within("intermediate_size", intermediateSize, 1, MAX_INTERMEDIATE);
    within("num_hidden_layers", numLayers, 1, MAX_LAYERS);
    within("num_attention_heads", numHeads, 1, MAX_HEADS);
    require(hiddenSize % numHeads == 0,
        "hidden_size " + hiddenSize + " is not divisible by num_attention_heads " + numHeads);
    require((hiddenSize / numHeads) % 2 == 0, "head_dim " + hiddenSize / numHeads + " must be even for rotary embeddings");
    within("max_position_embeddings", maxPositionEmbeddings, 1, MAX_POSITIONS);
    within("last_context_length", lastContextLength, 0, MAX_POSITIONS);
    // NaN fails both comparisons; 0 or a negative theta makes every rotation (and logit) NaN
    require(Double.isFinite(rmsNormEps) && rmsNormEps > 0, "rms_norm_eps must be finite and > 0, got " + rmsNormEps);
    require(Double.isFinite(ropeTheta) && ropeTheta > 0, "rope_theta must be finite and > 0, got " + ropeTheta);
    for (int l : memLayers) {
      require(l >= 0 && l < numLayers, "mem_layers entry " + l + " is outside 0.." + (numLayers - 1));
    }
    if (memAttentionGrouping != null) {
      require(memAttentionGrouping.length == 2 && memAttentionGrouping[0] > 0 && memAttentionGrouping[1] > 0,
          "mem_attention_grouping must be two positive ints [heads, queries]");
    }
  }

  public int headDim() {
    return hiddenSize / numHeads;
  }

  /** Index of the first token id outside the vocabulary [0, vocab_size), or -1 when there is none. */
  public int outsideVocabulary(long[] ids) {
    for (int t = 0; t < ids.length; t++) {
      if (ids[t] < 0 || ids[t] >= vocabSize) {
        return t;
      }
    }
    return -1;
  }

  /** Refuses a tokenizer of more pieces than the vocabulary: its ids would index past the embeddings. */
  public void checkTokenizer(int pieces) {
    if (pieces > vocabSize) {
      throw new CheckpointException("the tokenizer has " + pieces + " pieces, the model's vocabulary "
          + vocabSize + ": they do not belong together");
    }
  }

  public boolean isMemoryLayer(int layer) {
    return memLayers.contains(layer);
  }

  /** The index of the last memory layer, or -1: nothing after it changes what goes to memory. */
  public int lastMemoryLayer() {
    return memLayers.stream().mapToInt(Integer::intValue).max().orElse(-1);
  }

  public LongLlamaConfig withMemDType(MemDType dtype) {
    return new LongLlamaConfig(modelType, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads,
        maxPositionEmbeddings, rmsNormEps, ropeTheta, memLayers, dtype, memPositionals, memAttentionGrouping,
        lastContextLength, bosTokenId, eosTokenId, padTokenId, tieWordEmbeddings);
  }

  public LongLlamaConfig withLastContextLength(int n) {
    return new LongLlamaConfig(modelType, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads,
        maxPositionEmbeddings, rmsNormEps, ropeTheta, memLayers, memDType, memPositionals, memAttentionGrouping,
        n, bosTokenId, eosTokenId, padTokenId, tieWordEmbeddings);
  }

  public LongLlamaConfig withMemLayers(List<Integer> layers) {
    return new LongLlamaConfig(modelType, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads,
        maxPositionEmbeddings, rmsNormEps, ropeTheta, layers, memDType, memPositionals, memAttentionGrouping,
        lastContextLength, bosTokenId, eosTokenId, padTokenId, tieWordEmbeddings);
  }

  public LongLlamaConfig withMemAttentionGrouping(int[] grouping) {
    return new LongLlamaConfig(modelType, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads,
        maxPositionEmbeddings, rmsNormEps, ropeTheta, memLayers, memDType, memPositionals, grouping,
        lastContextLength, bosTokenId, eosTokenId, padTokenId, tieWordEmbeddings);
  }

  /** Reads {@code dir/config.json}. */
  public static LongLlamaConfig load(Path dir) throws IOException {
    Path file = dir.resolve("config.json");
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      JsonElement root = JsonParser.parseReader(r);
      if (!root.isJsonObject()) {
        throw new CheckpointException(file + ": not a JSON object");
      }
      return fromJson(root.getAsJsonObject(), file.toString());
    } catch (NoSuchFileException e) {
      throw new CheckpointException("no config.json in checkpoint directory " + dir);
    } catch (com.google.gson.JsonParseException e) {
      throw new CheckpointException(file + ": invalid JSON: " + e.getMessage());
    }
  }

  public static LongLlamaConfig fromJson(JsonObject o, String where) {
    try {
      String act = str(o, "hidden_act", "silu");
      if (!act.equals("silu")) {
        throw new CheckpointException(where + ": hidden_act '" + act + "' is not supported (LLaMA uses silu)");
      }
      if (o.has("rope_scaling") && !o.get("rope_scaling").isJsonNull()) {
        throw new CheckpointException(where + ": rope_scaling is not supported by LongLLaMA");
      }
      int heads = integer(o, "num_attention_heads", 32);
      if (field(o, "num_key_value_heads") != null && integer(o, "num_key_value_heads", heads) != heads) {
        throw new CheckpointException(where + ": num_key_value_heads " + o.get("num_key_value_heads")
            + " != num_attention_heads " + heads + " (grouped-query attention is not supported)");
      }
      List<Integer> memLayers = new ArrayList<>();
      if (o.has("mem_layers") && !o.get("mem_layers").isJsonNull()) {
        for (JsonElement e : o.getAsJsonArray("mem_layers")) {
          memLayers.add(exactInt("mem_layers", e));
        }
      }
      int[] grouping = null;
      if (o.has("mem_attention_grouping") && !o.get("mem_attention_grouping").isJsonNull()) {
        JsonArray g = o.getAsJsonArray("mem_attention_grouping");
        grouping = new int[g.size()];
        for (int i = 0; i < g.size(); i++) {
          grouping[i] = exactInt("mem_attention_grouping", g.get(i));
        }
      }
      int maxPos = integer(o, "max_position_embeddings", 2048);
      return new LongLlamaConfig(
          str(o, "model_type", "llama"),
          integer(o, "vocab_size", 32000),
          integer(o, "hidden_size", 4096),
          integer(o, "intermediate_size", 11008),
          integer(o, "num_hidden_layers", 32),
          heads,
          maxPos,
          dbl(o, "rms_norm_eps", 1e-6),
          dbl(o, "rope_theta", 10000.0),
          memLayers,
          MemDType.parse(str(o, "mem_dtype", "bfloat16")),
          bool(o, "mem_positionals", true),
          grouping,
          integer(o, "last_context_length", 1024),
          integer(o, "bos_token_id", 1),
          integer(o, "eos_token_id", 2),
          integer(o, "pad_token_id", 0),
          bool(o, "tie_word_embeddings", false));
    } catch (IllegalArgumentException | IllegalStateException | UnsupportedOperationException e) {
      if (e instanceof CheckpointException) {
        throw e;
      }
      throw new CheckpointException(where + ": " + e.getMessage());
    }
  }

  private static JsonElement field(JsonObject o, String k) {
    JsonElement e = o.get(k);
    return e == null || e.isJsonNull() ? null : e;
  }

  private static String str(JsonObject o, String k, String def) {
    JsonElement e = field(o, k);
    return e == null ? def : e.getAsString();
  }

  private static int integer(JsonObject o, String k, int def) {
    JsonElement e = field(o, k);
    if (e == null) {
      return def;
    }
    if (e.isJsonArray()) { // eos_token_id may be a list in newer configs: the first one stops generation
      if (e.getAsJsonArray().isEmpty()) {
        throw new InputException(k + " is an empty list");
      }
      return exactInt(k, e.getAsJsonArray().get(0));
    }
    return exactInt(k, e);
  }

  /**
   * A JSON number read exactly as an int: 512.5 is not 512 and 10^12 is not Integer.MAX_VALUE
   * (Gson's getAsInt would silently give either).
   */
  static int exactInt(String k, JsonElement e) {
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
      throw new InputException(k + " must be an integer, got " + e);
    }
    try {
      return e.getAsBigDecimal().intValueExact();
    } catch (ArithmeticException | NumberFormatException x) {
      throw new InputException(k + " must be an integer in [" + Integer.MIN_VALUE + ", " + Integer.MAX_VALUE
          + "], got " + e);
    }
  }

  private static double dbl(JsonObject o, String k, double def) {
    JsonElement e = field(o, k);
    if (e == null) {
      return def;
    }
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
      throw new InputException(k + " must be a number, got " + e);
    }
    return e.getAsDouble();
  }

  private static boolean bool(JsonObject o, String k, boolean def) {
    JsonElement e = field(o, k);
    return e == null ? def : e.getAsBoolean();
  }

  private static void within(String field, int value, int min, int max) {
    require(value >= min && value <= max, field + " must be in [" + min + ", " + max + "], got " + value);
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new CheckpointException("config.json: " + message);
    }
  }
}
