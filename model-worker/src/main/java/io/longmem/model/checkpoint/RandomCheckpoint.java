package io.longmem.model.checkpoint;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes a LongLLaMA checkpoint of random weights (BF16 safetensors + config.json) shaped as asked,
 * for benchmarks: the real 3B shapes without the real weights, which cannot be downloaded here.
 */
public final class RandomCheckpoint {
  private RandomCheckpoint() {}

  /** Shape of the random model. */
  public record Shape(int vocab, int hidden, int heads, int intermediate, int layers, int window,
      int lastContextLength, int[] memLayers) {
    /** LongLLaMA-3B's shapes with {@code layers} layers, memory in layers 1 and 2. */
    public static Shape longLlama3b(int layers) {
      return new Shape(32000, 3200, 32, 8640, layers, 2048, 1024, new int[] {1, 2});
    }
  }

  public static void write(Path dir, Shape s, long seed) throws IOException {
    Files.createDirectories(dir);
    JsonObject config = new JsonObject();
    config.addProperty("model_type", "longllama");
    config.addProperty("vocab_size", s.vocab());
    config.addProperty("hidden_size", s.hidden());
    config.addProperty("num_attention_heads", s.heads());
    config.addProperty("intermediate_size", s.intermediate());
    config.addProperty("num_hidden_layers", s.layers());
    config.addProperty("max_position_embeddings", s.window());
    config.addProperty("last_context_length", s.lastContextLength());
    config.addProperty("rms_norm_eps", 1e-6);
    config.addProperty("rope_theta", 10000.0);
    config.addProperty("mem_dtype", "bfloat16");
    config.addProperty("mem_positionals", true);
    config.addProperty("torch_dtype", "bfloat16");
    JsonArray mem = new JsonArray();
    for (int l : s.memLayers()) {
      mem.add(l);
    }
    config.add("mem_layers", mem);

    Map<String, long[]> tensors = new LinkedHashMap<>();
    tensors.put("model.embed_tokens.weight", new long[] {s.vocab(), s.hidden()});
    for (int l = 0; l < s.layers(); l++) {
      String p = "model.layers." + l + ".";
      for (String proj : new String[] {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        tensors.put(p + "self_attn." + proj + ".weight", new long[] {s.hidden(), s.hidden()});
      }
      tensors.put(p + "mlp.gate_proj.weight", new long[] {s.intermediate(), s.hidden()});
      tensors.put(p + "mlp.up_proj.weight", new long[] {s.intermediate(), s.hidden()});
      tensors.put(p + "mlp.down_proj.weight", new long[] {s.hidden(), s.intermediate()});
      tensors.put(p + "input_layernorm.weight", new long[] {s.hidden()});
      tensors.put(p + "post_attention_layernorm.weight", new long[] {s.hidden()});
    }
    tensors.put("model.norm.weight", new long[] {s.hidden()});
    tensors.put("lm_head.weight", new long[] {s.vocab(), s.hidden()});

    JsonObject header = new JsonObject();
    long offset = 0;
    for (Map.Entry<String, long[]> e : tensors.entrySet()) {
      long n = 1;
      for (long d : e.getValue()) {
        n *= d;
      }
      JsonObject t = new JsonObject();
      t.addProperty("dtype", "BF16");
      JsonArray shape = new JsonArray();
      for (long d : e.getValue()) {
        shape.add(d);
      }
      t.add("shape", shape);
      JsonArray offs = new JsonArray();
      offs.add(offset);
      offs.add(offset + 2 * n);
      t.add("data_offsets", offs);
      header.add(e.getKey(), t);
      offset += 2 * n;
    }
    byte[] headerBytes = header.toString().getBytes(StandardCharsets.UTF_8);
    int pad = (8 - headerBytes.length % 8) % 8;
    Path tmp = dir.resolve("model.safetensors.tmp");
    SplittableRandom random = new SplittableRandom(seed);
    try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
        StandardOpenOption.TRUNCATE_EXISTING)) {
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(headerBytes.length + pad);
      ch.write(len.flip());
      ch.write(ByteBuffer.wrap(headerBytes));
      ch.write(ByteBuffer.wrap(" ".repeat(pad).getBytes(StandardCharsets.US_ASCII)));
      ByteBuffer buf = ByteBuffer.allocateDirect(1 << 22).order(ByteOrder.LITTLE_ENDIAN);
      for (Map.Entry<String, long[]> e : tensors.entrySet()) {
        boolean norm = e.getValue().length == 1;
        long n = norm ? e.getValue()[0] : e.getValue()[0] * e.getValue()[1];
        // std ~ 1/sqrt(fan_in) keeps activations O(1) through the layers; norms are ones
        float scale = norm ? 0f : (float) (Math.sqrt(3.0 / e.getValue()[1]));
        for (long i = 0; i < n; i++) {
          if (!buf.hasRemaining()) {
            ch.write(buf.flip());
            buf.clear();
          }
          float v = norm ? 1f : (float) ((random.nextDouble() * 2 - 1) * scale);
          buf.putShort((short) (Float.floatToRawIntBits(v) >>> 16));
        }
      }
      ch.write(buf.flip());
    }
    Files.move(tmp, dir.resolve("model.safetensors"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    Files.writeString(dir.resolve("config.json"), new GsonBuilder().setPrettyPrinting().create().toJson(config));
  }
}
