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

  public LongLlamaConfig {
    memLayers = List.copyOf(memLayers);
    require(vocabSize > 0, "vocab_size must be positive, got " + vocabSize);
    require(hiddenSize > 0, "hidden_size must be positive, got " + hiddenSize);
    require(intermediateSize > 0, "intermediate_size must be positive, got " + intermediateSize);
    require(numLayers > 0, "num_hidden_layers must be positive, got " + numLayers);
    require(numHeads > 0 && hiddenSize % numHeads == 0,
        "hidden_size " + hiddenSize + " is not divisible by num_attention_heads " + numHeads);
    require((hiddenSize / numHeads) % 2 == 0, "head_dim " + hiddenSize / numHeads + " must be even for rotary embeddings");
    require(maxPositionEmbeddings > 0, "max_position_embeddings must be positive, got " + maxPositionEmbeddings);
    require(lastContextLength >= 0, "last_context_length must be >= 0, got " + lastContextLength);
    require(rmsNormEps > 0, "rms_norm_eps must be positive, got " + rmsNormEps);
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
      if (o.has("num_key_value_heads") && !o.get("num_key_value_heads").isJsonNull()
          && o.get("num_key_value_heads").getAsInt() != heads) {
        throw new CheckpointException(where + ": num_key_value_heads " + o.get("num_key_value_heads")
            + " != num_attention_heads " + heads + " (grouped-query attention is not supported)");
      }
      List<Integer> memLayers = new ArrayList<>();
      if (o.has("mem_layers") && !o.get("mem_layers").isJsonNull()) {
        for (JsonElement e : o.getAsJsonArray("mem_layers")) {
          memLayers.add(e.getAsInt());
        }
      }
      int[] grouping = null;
      if (o.has("mem_attention_grouping") && !o.get("mem_attention_grouping").isJsonNull()) {
        JsonArray g = o.getAsJsonArray("mem_attention_grouping");
        grouping = new int[g.size()];
        for (int i = 0; i < g.size(); i++) {
          grouping[i] = g.get(i).getAsInt();
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
      return e.getAsJsonArray().get(0).getAsInt();
    }
    double d = e.getAsDouble();
    if (d != Math.rint(d)) {
      throw new InputException(k + " must be an integer, got " + e);
    }
    return (int) d;
  }

  private static double dbl(JsonObject o, String k, double def) {
    JsonElement e = field(o, k);
    return e == null ? def : e.getAsDouble();
  }

  private static boolean bool(JsonObject o, String k, boolean def) {
    JsonElement e = field(o, k);
    return e == null ? def : e.getAsBoolean();
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new CheckpointException("config.json: " + message);
    }
  }
}
