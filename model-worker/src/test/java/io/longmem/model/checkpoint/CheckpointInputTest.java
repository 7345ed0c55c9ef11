package io.longmem.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crafted, hostile checkpoint files (torch zips, pickles, safetensors headers): each one is a
 * {@link CheckpointException} naming the file and what is wrong, never an OutOfMemoryError, a
 * StackOverflowError, a raw Java exception or a silently wrong tensor.
 */
class CheckpointInputTest {
  // ---- torch zips and their data.pkl

  /** Writes a zip of the given entries; names ending in data.pkl are deflated, storages stored. */
  static Path zip(Path file, Map<String, byte[]> entries) throws IOException {
    try (OutputStream os = Files.newOutputStream(file); ZipOutputStream zip = new ZipOutputStream(os)) {
      for (Map.Entry<String, byte[]> e : entries.entrySet()) {
        ZipEntry z = new ZipEntry(e.getKey());
        byte[] b = e.getValue();
        if (!e.getKey().endsWith("data.pkl")) {
          z.setMethod(ZipEntry.STORED);
          z.setSize(b.length);
          CRC32 crc = new CRC32();
          crc.update(b);
          z.setCrc(crc.getValue());
        }
        zip.putNextEntry(z);
        zip.write(b);
        zip.closeEntry();
      }
    }
    return file;
  }

  /** Overwrites the uncompressed size that the zip's central directory declares for its first entry. */
  static void declareSize(Path file, long size) throws IOException {
    byte[] all = Files.readAllBytes(file);
    for (int i = all.length - 46; i >= 0; i--) {
      if (all[i] == 0x50 && all[i + 1] == 0x4b && all[i + 2] == 1 && all[i + 3] == 2) { // central header
        ByteBuffer.wrap(all, i + 24, 4).order(ByteOrder.LITTLE_ENDIAN).putInt((int) size);
        Files.write(file, all);
        return;
      }
    }
    throw new AssertionError("no central directory in " + file);
  }

  private static String error(Path bin) {
    return assertThrows(CheckpointException.class, () -> TorchZipFile.open(bin)).getMessage();
  }

  @Test
  void dataPklMayNotInflateWithoutBound(@TempDir Path tmp) throws IOException {
    // 2 MiB of nothing: more than a zip without storages can need (it deflates to a few KB)
    Path big = zip(tmp.resolve("big.bin"), Map.of("archive/data.pkl", new byte[2 << 20]));
    String msg = error(big);
    assertTrue(msg.contains("big.bin") && msg.contains("declares 2097152 bytes") && msg.contains("needs at most"), msg);

    // the zip directory lies: 100 bytes declared, 8 MiB inflated; reading stops at the declared size
    Path lying = zip(tmp.resolve("lying.bin"), Map.of("archive/data.pkl", new byte[8 << 20]));
    declareSize(lying, 100);
    msg = error(lying);
    assertTrue(msg.contains("declares 100 bytes but inflates to more"), msg);
  }

  /** A pickle program: PROTO 2, then the given opcodes, then STOP. */
  private static byte[] pickle(Op body) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    b.write(new byte[] {(byte) 0x80, 2});
    body.write(b);
    b.write('.');
    return b.toByteArray();
  }

  private interface Op {
    void write(ByteArrayOutputStream b) throws IOException;
  }

  private static void str(ByteArrayOutputStream b, String s) {
    byte[] u = s.getBytes(StandardCharsets.UTF_8);
    b.write(0x8c);
    b.write(u.length);
    b.writeBytes(u);
  }

  private static void global(ByteArrayOutputStream b, String module, String name) {
    b.write('c');
    b.writeBytes((module + "\n" + name + "\n").getBytes(StandardCharsets.US_ASCII));
  }

  private static void storage(ByteArrayOutputStream b) {
    b.write('(');
    str(b, "storage");
    global(b, "torch", "FloatStorage");
    str(b, "0");
    str(b, "cpu");
    b.writeBytes(new byte[] {'K', 4, 't', 'Q'});
  }

  private static String pickleError(Path tmp, byte[] pkl, boolean withStorage) throws IOException {
    Map<String, byte[]> entries = new LinkedHashMap<>();
    entries.put("archive/data.pkl", pkl);
    if (withStorage) {
      entries.put("archive/data/0", new byte[16]);
    }
    return error(zip(Files.createTempFile(tmp, "crafted", ".bin"), entries));
  }

  @Test
  void rebuildWithNoneArgumentsIsNamed(@TempDir Path tmp) throws IOException {
    byte[] pkl = pickle(b -> {
      b.write('}');
      str(b, "w");
      global(b, "torch._utils", "_rebuild_tensor_v2");
      b.writeBytes(new byte[] {'(', 'N', 'N', 'N', 'N', 't', 'R', 's'});
    });
    String msg = pickleError(tmp, pkl, false);
    assertTrue(msg.contains("_rebuild_tensor_v2 argument 0 (storage) is None"), msg);

    pkl = pickle(b -> { // a real storage, then None for the offset
      b.write('}');
      str(b, "w");
      global(b, "torch._utils", "_rebuild_tensor_v2");
      b.write('(');
      storage(b);
      b.writeBytes(new byte[] {'N', ')', ')', 't', 'R', 's'});
    });
    msg = pickleError(tmp, pkl, true);
    assertTrue(msg.contains("argument 1 (storage offset) is None"), msg);

    msg = pickleError(tmp, pickle(b -> b.writeBytes(new byte[] {'N', 'N', 'N', 's'})), false);
    assertTrue(msg.contains("sets an item on None"), msg);
  }

  @Test
  void deeplyNestedPickleIsRefused(@TempDir Path tmp) throws IOException {
    int depth = 200_000;
    byte[] pkl = pickle(b -> {
      b.write('}');
      for (int i = 0; i < depth; i++) {
        b.write(']');
      }
      for (int i = 1; i < depth; i++) {
        b.write('a'); // each list into the one below it: 200k deep
      }
      b.writeBytes(new byte[] {'N', 's'}); // as a dict key: hashing it would recurse 200k deep
    });
    String msg = pickleError(tmp, pkl, false);
    assertTrue(msg.contains("dict key of type a list"), msg);

    byte[] many = pickle(b -> { // more objects than any state dict builds
      for (int i = 0; i < TorchPickle.MAX_OBJECTS + 1; i++) {
        b.write(']');
      }
    });
    Path f = zip(tmp.resolve("many.bin"), Map.of("archive/data.pkl", many));
    // the size cap alone refuses this one (no storages); the object cap is met by calling the machine directly
    assertTrue(error(f).contains("needs at most"));
    var e = assertThrows(CheckpointException.class, () -> TorchPickle.loadStateDict(many, "many.bin"));
    assertTrue(e.getMessage().contains("more than " + TorchPickle.MAX_OBJECTS + " objects"), e.getMessage());
  }

  @Test
  void negativeShapesAreRefused(@TempDir Path tmp) throws IOException {
    byte[] pkl = pickle(b -> {
      b.write('}');
      str(b, "w");
      global(b, "torch._utils", "_rebuild_tensor_v2");
      b.write('(');
      storage(b);
      b.writeBytes(new byte[] {'K', 0, 'J', (byte) 0xFC, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0x85,
          'K', 1, (byte) 0x85, 't', 'R', 's'});
    });
    String msg = pickleError(tmp, pkl, true);
    assertTrue(msg.contains("negative size or stride") && msg.contains("[-4]"), msg);
  }

  // ---- safetensors headers

  private static String safetensorsError(Path tmp, String header, int dataBytes) throws IOException {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    ByteBuffer file = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
    file.putLong(h.length).put(h);
    Path p = Files.createTempFile(tmp, "crafted", ".safetensors");
    Files.write(p, file.array());
    String msg = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(p)).getMessage();
    assertTrue(msg.contains(p.getFileName().toString()), "names the file: " + msg);
    return msg;
  }

  @Test
  void safetensorsHeadersAreCheckedFieldByField(@TempDir Path tmp) throws IOException {
    String[][] cases = {
        {"{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "tensor w has no dtype"},
        {"{\"w\": [\"F32\", [1], [0, 4]]}", "tensor w is not a JSON object"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}", "data_offsets must have 2 entries"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 400]}}", "truncated"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "shape entry 1.5 is not"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "shape entry -1 is not"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1e30], \"data_offsets\": [0, 4]}}", "shape entry"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", "needs 8 bytes"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}",
            "needs more than 2^63"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", "has no shape array"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
            + " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "overlapping"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
            + " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [6, 10]}}", "gap"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "the tensors end at data byte 4"},
        {"[1, 2]", "not valid JSON"},
    };
    for (String[] c : cases) {
      String msg = safetensorsError(tmp, c[0], c[1].contains("data byte 4") ? 12 : c[1].equals("gap") ? 10 : 8);
      assertTrue(msg.contains(c[1]), c[0] + " -> " + msg);
    }
  }

  // ---- config.json

  private static String configError(Path tmp, String field, String json) throws IOException {
    Path dir = Files.createTempDirectory(tmp, "cfg");
    com.google.gson.JsonObject o = com.google.gson.JsonParser.parseString(
        Files.readString(io.longmem.Fixtures.tinyA().resolve("model/config.json"))).getAsJsonObject();
    o.add(field, com.google.gson.JsonParser.parseString(json));
    Files.writeString(dir.resolve("config.json"), o.toString());
    return assertThrows(CheckpointException.class, () -> LongLlamaConfig.load(dir)).getMessage();
  }

  @Test
  void configSizesAndConstantsAreSane(@TempDir Path tmp) throws IOException {
    String[][] cases = {
        {"max_position_embeddings", "1000000000", "max_position_embeddings must be in [1, 1048576], got 1000000000"},
        {"hidden_size", "1000000000000", "hidden_size must be an integer in"},
        {"hidden_size", "131072", "hidden_size must be in [1, 65536]"},
        {"intermediate_size", "100000000", "intermediate_size must be in"},
        {"vocab_size", "0", "vocab_size must be in"},
        {"num_hidden_layers", "100000", "num_hidden_layers must be in"},
        {"num_attention_heads", "5", "not divisible by num_attention_heads 5"},
        {"num_attention_heads", "4.5", "num_attention_heads must be an integer"},
        {"last_context_length", "-1", "last_context_length must be in"},
        {"mem_layers", "[1.5]", "mem_layers must be an integer"},
        {"mem_layers", "[-1]", "mem_layers entry -1"},
        {"rope_theta", "0", "rope_theta must be finite and > 0"},
        {"rope_theta", "-10000", "rope_theta must be finite and > 0"},
        {"rope_theta", "1e400", "rope_theta must be finite and > 0"},
        {"rope_theta", "\"fast\"", "rope_theta must be a number"},
        {"rms_norm_eps", "0", "rms_norm_eps must be finite and > 0"},
        {"num_key_value_heads", "2.5", "num_key_value_heads must be an integer"},
    };
    for (String[] c : cases) {
      String msg = configError(tmp, c[0], c[1]);
      assertTrue(msg.contains(c[2]) && msg.contains("config.json"), c[0] + "=" + c[1] + " -> " + msg);
    }
    com.google.gson.JsonObject o = com.google.gson.JsonParser.parseString(
        Files.readString(io.longmem.Fixtures.tinyA().resolve("model/config.json"))).getAsJsonObject();
    o.addProperty("rope_theta", Double.NaN);
    var e = assertThrows(CheckpointException.class, () -> LongLlamaConfig.fromJson(o, "cfg"));
    assertTrue(e.getMessage().contains("rope_theta must be finite and > 0, got NaN"), e.getMessage());
  }
}
