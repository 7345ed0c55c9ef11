package io.longmem.model.checkpoint;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * A Hugging Face checkpoint directory as published: {@code config.json} plus weights in one of the
 * layouts {@code save_pretrained} writes: {@code model.safetensors}, sharded safetensors with
 * {@code model.safetensors.index.json}, {@code pytorch_model.bin}, or sharded {@code .bin} with
 * {@code pytorch_model.bin.index.json}. Tensors stay memory-mapped until the model copies them.
 */
public final class Checkpoint {
  private final Path dir;
  private final LongLlamaConfig config;
  private final Map<String, StoredTensor> tensors;
  private final String layout;

  private Checkpoint(Path dir, LongLlamaConfig config, Map<String, StoredTensor> tensors, String layout) {
    this.dir = dir;
    this.config = config;
    this.tensors = tensors;
    this.layout = layout;
  }

  public static Checkpoint open(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      throw new CheckpointException("checkpoint directory " + dir + " does not exist");
    }
    LongLlamaConfig config = LongLlamaConfig.load(dir);
    Map<String, StoredTensor> tensors = new LinkedHashMap<>();
    String layout;
    if (Files.exists(dir.resolve("model.safetensors.index.json"))) {
      layout = "sharded safetensors";
      loadSharded(dir, dir.resolve("model.safetensors.index.json"), true, tensors);
    } else if (Files.exists(dir.resolve("model.safetensors"))) {
      layout = "safetensors";
      tensors.putAll(SafetensorsFile.open(dir.resolve("model.safetensors")));
    } else if (Files.exists(dir.resolve("pytorch_model.bin.index.json"))) {
      layout = "sharded pytorch .bin";
      loadSharded(dir, dir.resolve("pytorch_model.bin.index.json"), false, tensors);
    } else if (Files.exists(dir.resolve("pytorch_model.bin"))) {
      layout = "pytorch .bin";
      tensors.putAll(TorchZipFile.open(dir.resolve("pytorch_model.bin")));
    } else {
      throw new CheckpointException("no weights in " + dir + ": expected model.safetensors, "
          + "model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json");
    }
    Checkpoint c = new Checkpoint(dir, config, tensors, layout);
    c.validate();
    return c;
  }

  private static void loadSharded(Path dir, Path index, boolean safetensors, Map<String, StoredTensor> out)
      throws IOException {
    JsonObject weightMap;
    try {
      weightMap = JsonParser.parseString(Files.readString(index, StandardCharsets.UTF_8))
          .getAsJsonObject().getAsJsonObject("weight_map");
    } catch (RuntimeException e) {
      throw new CheckpointException(index + ": not a valid shard index: " + e.getMessage());
    }
    if (weightMap == null) {
      throw new CheckpointException(index + ": no weight_map");
    }
    Map<String, Set<String>> byFile = new TreeMap<>();
    for (Map.Entry<String, JsonElement> e : weightMap.entrySet()) {
      byFile.computeIfAbsent(e.getValue().getAsString(), k -> new LinkedHashSet<>()).add(e.getKey());
    }
    for (Map.Entry<String, Set<String>> f : byFile.entrySet()) {
      Path shard = dir.resolve(f.getKey()).normalize();
      if (!shard.startsWith(dir.normalize())) {
        throw new CheckpointException(index + ": shard " + f.getKey() + " lies outside the checkpoint directory");
      }
      if (!Files.exists(shard)) {
        throw new CheckpointException(index + " lists shard " + f.getKey() + ", which is missing");
      }
      Map<String, StoredTensor> inShard = safetensors ? SafetensorsFile.open(shard) : TorchZipFile.open(shard);
      for (String name : f.getValue()) {
        StoredTensor t = inShard.get(name);
        if (t == null) {
          throw new CheckpointException(index + " places tensor " + name + " in " + f.getKey()
              + ", which does not contain it");
        }
        out.put(name, t);
      }
    }
  }

  /** Checks every tensor the config implies, by name and shape, before anything is computed. */
  private void validate() {
    int h = config.hiddenSize();
    int v = config.vocabSize();
    int i = config.intermediateSize();
    expect("model.embed_tokens.weight", v, h);
    expect("model.norm.weight", h);
    if (!config.tieWordEmbeddings() || tensors.containsKey("lm_head.weight")) {
      expect("lm_head.weight", v, h);
    }
    for (int l = 0; l < config.numLayers(); l++) {
      String p = "model.layers." + l + ".";
      for (String proj : new String[] {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        expect(p + "self_attn." + proj + ".weight", h, h);
      }
      expect(p + "mlp.gate_proj.weight", i, h);
      expect(p + "mlp.up_proj.weight", i, h);
      expect(p + "mlp.down_proj.weight", h, i);
      expect(p + "input_layernorm.weight", h);
      expect(p + "post_attention_layernorm.weight", h);
    }
    if (tensors.containsKey("model.layers." + config.numLayers() + ".input_layernorm.weight")) {
      throw new CheckpointException(dir + ": weights have more layers than num_hidden_layers="
          + config.numLayers() + " in config.json");
    }
  }

  private void expect(String name, long... shape) {
    StoredTensor t = tensors.get(name);
    if (t == null) {
      throw new CheckpointException(dir + " (" + layout + "): missing tensor " + name);
    }
    if (!Arrays.equals(t.shape(), shape)) {
      throw new CheckpointException(t.file() + ": tensor " + name + " has shape " + Arrays.toString(t.shape())
          + ", config.json implies " + Arrays.toString(shape));
    }
    if (!t.type().isWeightType()) {
      throw new CheckpointException(t.file() + ": tensor " + name + " has type " + t.type()
          + ", weights must be F32, F16 or BF16");
    }
  }

  /** The tensor of that name; {@code lm_head.weight} falls back to the embedding when tied. */
  public StoredTensor tensor(String name) {
    StoredTensor t = tensors.get(name);
    if (t == null && name.equals("lm_head.weight") && config.tieWordEmbeddings()) {
      t = tensors.get("model.embed_tokens.weight");
    }
    if (t == null) {
      throw new CheckpointException(dir + ": missing tensor " + name);
    }
    return t;
  }

  public Map<String, StoredTensor> tensors() {
    return java.util.Collections.unmodifiableMap(tensors);
  }

  public LongLlamaConfig config() {
    return config;
  }

  public Path dir() {
    return dir;
  }

  public String layout() {
    return layout;
  }

  /**
   * Identifies the model whose memory a collection holds: a SHA-256 over the config fields and
   * weights that shape memory (the embedding and every layer up to the last memory layer; a
   * sample of 3 x 1024 values per tensor, read as float32, so the same weights in any layout and
   * storage type give the same fingerprint). Collections written by another model are refused.
   */
  public String fingerprint() {
    try {
      java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
      LongLlamaConfig c = config;
      String head = String.join(",", "longllama-memory-v1", Integer.toString(c.vocabSize()),
          Integer.toString(c.hiddenSize()), Integer.toString(c.intermediateSize()), Integer.toString(c.numHeads()),
          Integer.toString(c.maxPositionEmbeddings()), Double.toString(c.rmsNormEps()), Double.toString(c.ropeTheta()),
          c.memLayers().toString(), Boolean.toString(c.memPositionals()));
      md.update(head.getBytes(java.nio.charset.StandardCharsets.UTF_8));
      java.util.List<String> names = new java.util.ArrayList<>();
      names.add("model.embed_tokens.weight");
      for (String n : new java.util.TreeSet<>(tensors.keySet())) {
        if (n.startsWith("model.layers.")) {
          int layer = Integer.parseInt(n.split("\\.")[2]);
          if (layer <= c.lastMemoryLayer()) {
            names.add(n);
          }
        }
      }
      java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4);
      for (String n : names) {
        StoredTensor t = tensors.get(n);
        md.update((n + java.util.Arrays.toString(t.shape())).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        for (float f : sample(t)) {
          md.update(b.putFloat(0, f).array());
        }
      }
      return "sha256:" + java.util.HexFormat.of().formatHex(md.digest()).substring(0, 32);
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static float[] sample(StoredTensor t) {
    long n = t.numel();
    int k = (int) Math.min(1024, n);
    float[] out = new float[3 * k];
    long stride = Math.max(1, n / k);
    for (int i = 0; i < k; i++) {
      out[i] = t.get(i);
      out[k + i] = t.get(n - k + i);
      out[2 * k + i] = t.get(Math.min(n - 1, i * stride));
    }
    return out;
  }

  /** The tokenizer shipped with the checkpoint, if any. */
  public Path tokenizerModel() {
    Path p = dir.resolve("tokenizer.model");
    return Files.exists(p) ? p : null;
  }

  /**
   * The tokenizer a command uses: the one given ({@code --tokenizer}), else the checkpoint's own
   * tokenizer.model, else null (then only token ids can be read).
   */
  public Path tokenizerModel(Path explicit) {
    if (explicit != null && !Files.isRegularFile(explicit)) {
      throw new CheckpointException("tokenizer " + explicit + " does not exist");
    }
    return explicit != null ? explicit : tokenizerModel();
  }
}
