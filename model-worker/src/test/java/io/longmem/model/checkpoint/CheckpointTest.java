package io.longmem.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {
  private static final Path TINY = Fixtures.tinyA();

  @Test
  void threeLayoutsHoldTheSameValues() throws IOException {
    Checkpoint f32 = Checkpoint.open(TINY.resolve("model"));
    Checkpoint bf16 = Checkpoint.open(TINY.resolve("model-bf16"));
    Checkpoint bin = Checkpoint.open(TINY.resolve("model-bin"));
    assertEquals("safetensors", f32.layout());
    assertEquals("sharded pytorch .bin", bin.layout());
    assertEquals(StorageType.BF16, bf16.tensor("lm_head.weight").type());
    for (String name : f32.tensors().keySet()) {
      float[] a = f32.tensor(name).toFloatArray();
      assertArrayEquals(a, bf16.tensor(name).toFloatArray(), 0f, name);
      assertArrayEquals(a, bin.tensor(name).toFloatArray(), 0f, name);
    }
    LongLlamaConfig c = f32.config();
    assertEquals(java.util.List.of(1, 2), c.memLayers());
    assertEquals(MemDType.BFLOAT16, c.memDType());
    assertEquals(32, c.maxPositionEmbeddings());
    assertEquals(16, c.lastContextLength());
  }

  @Test
  void fingerprintIsTheModelNotTheLayout(@TempDir Path tmp) throws IOException {
    String f32 = Checkpoint.open(TINY.resolve("model")).fingerprint();
    assertEquals(f32, Checkpoint.open(TINY.resolve("model-bf16")).fingerprint());
    assertEquals(f32, Checkpoint.open(TINY.resolve("model-bin")).fingerprint());
    assertTrue(f32.startsWith("sha256:"));
    // memory depends on layers up to the last memory layer (2): layer 3 does not count, layer 0 does
    Path dir = copy("model", tmp);
    Path st = dir.resolve("model.safetensors");
    Checkpoint c = Checkpoint.open(dir);
    long layer3 = offsetOf(c, st, "model.layers.3.mlp.up_proj.weight");
    long layer0 = offsetOf(c, st, "model.layers.0.self_attn.k_proj.weight");
    flipFirstFloat(st, layer3);
    assertEquals(f32, Checkpoint.open(dir).fingerprint());
    flipFirstFloat(st, layer0);
    assertTrue(!f32.equals(Checkpoint.open(dir).fingerprint()));
  }

  /** File offset of a tensor's first byte, found by its content (tensors are small and distinct). */
  private static long offsetOf(Checkpoint c, Path file, String name) throws IOException {
    byte[] all = Files.readAllBytes(file);
    java.nio.ByteBuffer d = c.tensor(name).data();
    byte[] head = new byte[64];
    d.get(head);
    outer:
    for (int i = 0; i + head.length <= all.length; i++) {
      for (int j = 0; j < head.length; j++) {
        if (all[i + j] != head[j]) {
          continue outer;
        }
      }
      return i;
    }
    throw new AssertionError(name + " not found");
  }

  private static void flipFirstFloat(Path file, long offset) throws IOException {
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file,
        java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
      java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
      ch.read(b, offset);
      b.putFloat(0, b.getFloat(0) + 1f);
      b.rewind();
      ch.write(b, offset);
    }
  }

  private static Path copy(String layout, Path tmp) throws IOException {
    Path dst = tmp.resolve(layout);
    Files.createDirectories(dst);
    try (var files = Files.list(TINY.resolve(layout))) {
      for (Path f : files.toList()) {
        Files.copy(f, dst.resolve(f.getFileName()), StandardCopyOption.REPLACE_EXISTING);
        dst.resolve(f.getFileName()).toFile().setWritable(true);
      }
    }
    return dst;
  }

  private static String error(Path dir) {
    return assertThrows(CheckpointException.class, () -> Checkpoint.open(dir)).getMessage();
  }

  @Test
  void missingThingsAreNamed(@TempDir Path tmp) throws IOException {
    assertTrue(error(tmp.resolve("nowhere")).contains("does not exist"));
    Path empty = Files.createDirectories(tmp.resolve("empty"));
    assertTrue(error(empty).contains("no config.json"));
    Files.copy(TINY.resolve("model/config.json"), empty.resolve("config.json"));
    assertTrue(error(empty).contains("no weights in"));

    Path bin = copy("model-bin", tmp);
    Path index = bin.resolve("pytorch_model.bin.index.json");
    var json = Fixtures.json(index);
    json.getAsJsonObject("weight_map").remove("model.norm.weight");
    Files.writeString(index, json.toString());
    String msg = error(bin);
    assertTrue(msg.contains("missing tensor model.norm.weight"), msg);

    Path gone = copy("model-bin", tmp.resolve("x"));
    Files.delete(gone.resolve("pytorch_model-00002-of-00002.bin"));
    msg = error(gone);
    assertTrue(msg.contains("pytorch_model-00002-of-00002.bin, which is missing"), msg);
  }

  @Test
  void configAndWeightsMustAgree(@TempDir Path tmp) throws IOException {
    Path dir = copy("model", tmp);
    Path config = dir.resolve("config.json");
    Files.writeString(config, Files.readString(config).replace("\"intermediate_size\": 172", "\"intermediate_size\": 180"));
    String msg = error(dir);
    assertTrue(msg.contains("model.layers.0.mlp.gate_proj.weight has shape [172, 64], config.json implies [180, 64]"), msg);

    Files.writeString(config, Files.readString(TINY.resolve("model/config.json")).replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3"));
    msg = error(dir);
    assertTrue(msg.contains("more layers than num_hidden_layers=3"), msg);

    Files.writeString(config, Files.readString(TINY.resolve("model/config.json")).replace("\"mem_layers\": [\n    1,", "\"mem_layers\": [\n    7,"));
    msg = error(dir);
    assertTrue(msg.contains("mem_layers entry 7"), msg);
  }

  @Test
  void truncatedFilesAreRefused(@TempDir Path tmp) throws IOException {
    Path dir = copy("model", tmp);
    Path st = dir.resolve("model.safetensors");
    byte[] all = Files.readAllBytes(st);
    Files.write(st, java.util.Arrays.copyOf(all, all.length - 100));
    String msg = error(dir);
    assertTrue(msg.contains("model.safetensors") && msg.contains("truncated"), msg);

    Path bin = copy("model-bin", tmp.resolve("b"));
    Path shard = bin.resolve("pytorch_model-00001-of-00002.bin");
    byte[] b = Files.readAllBytes(shard);
    Files.write(shard, java.util.Arrays.copyOf(b, b.length / 2));
    msg = error(bin);
    assertTrue(msg.contains("pytorch_model-00001-of-00002.bin"), msg);
  }

  /**
   * A shard whose tensors sit beyond 2 GiB (two sparse 1.05 GiB filler tensors first) loads with
   * the same values: tensors are mapped one by one at 64-bit offsets.
   */
  @Test
  void tensorsBeyondTwoGibibytes(@TempDir Path tmp) throws IOException {
    Map<String, StoredTensor> small = Checkpoint.open(TINY.resolve("model")).tensors();
    long half = (1L << 30) + (50L << 20);
    long filler = 2 * half;
    com.google.gson.JsonObject header = new com.google.gson.JsonObject();
    header.add("filler.0", tensorJson("U8", new long[] {half}, 0, half));
    header.add("filler.1", tensorJson("U8", new long[] {half}, half, filler));
    long offset = filler;
    for (StoredTensor t : small.values()) {
      long bytes = t.numel() * 4;
      header.add(t.name(), tensorJson("F32", t.shape(), offset, offset + bytes));
      offset += bytes;
    }
    byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
    Path dir = Files.createDirectories(tmp.resolve("big"));
    Files.copy(TINY.resolve("model/config.json"), dir.resolve("config.json"));
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(dir.resolve("model.safetensors"),
        java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE,
        java.nio.file.StandardOpenOption.SPARSE)) {
      ch.write(java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, h.length));
      ch.write(java.nio.ByteBuffer.wrap(h));
      long pos = 8 + h.length + filler; // the filler stays a hole on disk
      for (StoredTensor t : small.values()) {
        java.nio.ByteBuffer data = t.data();
        while (data.hasRemaining()) {
          pos += ch.write(data, pos);
        }
      }
    }
    assertTrue(Files.size(dir.resolve("model.safetensors")) > (1L << 31));
    Checkpoint big = Checkpoint.open(dir);
    for (StoredTensor t : small.values()) {
      assertArrayEquals(t.toFloatArray(), big.tensor(t.name()).toFloatArray(), 0f, t.name());
    }
  }

  private static com.google.gson.JsonObject tensorJson(String dtype, long[] shape, long begin, long end) {
    com.google.gson.JsonObject o = new com.google.gson.JsonObject();
    o.addProperty("dtype", dtype);
    com.google.gson.JsonArray s = new com.google.gson.JsonArray();
    for (long d : shape) {
      s.add(d);
    }
    o.add("shape", s);
    com.google.gson.JsonArray offs = new com.google.gson.JsonArray();
    offs.add(begin);
    offs.add(end);
    o.add("data_offsets", offs);
    return o;
  }

  @Test
  void picklesCannotCallArbitraryFunctions(@TempDir Path tmp) throws IOException {
    Path dir = Files.createDirectories(tmp.resolve("evil"));
    Files.copy(TINY.resolve("model/config.json"), dir.resolve("config.json"));
    // {'x': os.system('echo pwned')} in pickle protocol 2
    java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
    b.write(new byte[] {(byte) 0x80, 2, '}', 'q', 0, 'X', 1, 0, 0, 0, 'x'});
    b.write("cos\nsystem\n".getBytes(StandardCharsets.US_ASCII));
    b.write(new byte[] {'X', 10, 0, 0, 0});
    b.write("echo pwned".getBytes(StandardCharsets.US_ASCII));
    b.write(new byte[] {(byte) 0x85, 'R', 's', '.'});
    byte[] pkl = b.toByteArray();
    try (OutputStream os = Files.newOutputStream(dir.resolve("pytorch_model.bin"));
         ZipOutputStream zip = new ZipOutputStream(os)) {
      ZipEntry e = new ZipEntry("archive/data.pkl");
      e.setMethod(ZipEntry.STORED);
      e.setSize(pkl.length);
      CRC32 crc = new CRC32();
      crc.update(pkl);
      e.setCrc(crc.getValue());
      zip.putNextEntry(e);
      zip.write(pkl);
      zip.closeEntry();
    }
    String msg = error(dir);
    assertTrue(msg.contains("pickle global os.system is not allowed"), msg);
  }
}
