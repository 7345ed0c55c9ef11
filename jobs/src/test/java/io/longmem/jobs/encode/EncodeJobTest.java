package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.encode.DocumentEncoder;
import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.shard.Manifest;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The encode job on a real local[2] Spark session, writing real Arrow + FAISS shards. */
class EncodeJobTest {
  static SparkSession spark;

  @BeforeAll
  static void start() {
    spark = JobFixtures.spark(2);
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  static EncodeSpec spec(Path model, String tokenizer, String memDType, int shards, Path input, String format) {
    return new EncodeSpec(model.toString(), tokenizer, memDType, "Flat", 1024, shards, 4, 16384, 1,
        new Corpus.Spec(input.toString(), Corpus.Format.valueOf(format), "id", "text", "token_ids"));
  }

  /** The book plus other documents, a duplicate id, an empty document and a malformed line. */
  static Map<String, long[]> writeCorpus(Path file) throws IOException {
    long[] book = JobFixtures.bookIds();
    Map<String, long[]> docs = new LinkedHashMap<>();
    docs.put("book", book);
    for (int i = 0; i < 6; i++) {
      docs.put("part-" + i, Arrays.copyOfRange(book, i * 7, i * 7 + 20 + 13 * i)); // 20..85 tokens
    }
    List<String> lines = new ArrayList<>();
    docs.forEach((id, ids) -> lines.add(JobFixtures.jsonLine(id, ids)));
    lines.add(JobFixtures.jsonLine("part-2", Arrays.copyOf(book, 9))); // duplicate id: the first is kept
    lines.add(JobFixtures.jsonLine("nothing", new long[0]));
    lines.add("{\"id\": \"broken\", \"token_ids\": [1, 2");
    Files.createDirectories(file.getParent());
    Files.write(file, lines);
    return docs;
  }

  @Test
  void bookEncodedBySparkHoldsTheReferenceMemory(@TempDir Path tmp) throws Exception {
    Path input = tmp.resolve("in/docs.jsonl");
    Map<String, long[]> docs = writeCorpus(input);
    Path model = JobFixtures.tinyA().resolve("model");
    for (String tag : new String[] {"f32", "bf16"}) {
      String dtype = tag.equals("f32") ? "float32" : "bfloat16";
      Path out = tmp.resolve("out-" + tag);
      EncodeJob.Report r = EncodeJob.run(spark, spec(model, null, dtype, 3, input, "AUTO"), out, false, 1);
      assertEquals(docs.size(), r.counts().documents());
      assertEquals(docs.values().stream().mapToLong(a -> a.length).sum(), r.counts().tokens());
      assertEquals(1, r.counts().duplicates());
      assertEquals(1, r.counts().empty());
      assertEquals(1, r.counts().malformed());
      assertFalse(Files.exists(out.resolve(".staging")), "staging left behind");
      checkJobResult(out, docs, 0);
      if (tag.equals("f32")) {
        // a resume of a run whose job.json holds a result: only the plan is compared
        Files.delete(out.resolve(Manifest.FILE));
        EncodeJob.Report again = EncodeJob.run(spark, spec(model, null, dtype, 3, input, "AUTO"), out, true, 1);
        assertEquals(3, again.resumedShards());
        checkJobResult(out, docs, 3);
      }
      for (int layer : new int[] {1, 2}) {
        float[][][] got = JobFixtures.documentMemory(out, "book", layer);
        float[][] wantKeys = JobFixtures.reference(tag + "_book_mem_keys_layer" + layer + ".npy");
        float[][] wantValues = JobFixtures.reference(tag + "_book_mem_values_layer" + layer + ".npy");
        assertEquals(wantKeys.length, got[0].length);
        checkReference(tag, layer, "keys", wantKeys, got[0]);
        checkReference(tag, layer, "values", wantValues, got[1]);
      }
      // the other documents, read in batches by the job, hold what each holds when read alone
      Checkpoint ckpt = Checkpoint.open(model);
      try (LongLlama m = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.parse(dtype)), Device.cpu())) {
        DocumentEncoder enc = new DocumentEncoder(m);
        for (var d : docs.entrySet()) {
          List<MemoryBlock> alone = enc.encode(d.getValue());
          for (int li = 0; li < 2; li++) {
            float[][][] got = JobFixtures.documentMemory(out, d.getKey(), li + 1);
            assertClose(tokenMajor(alone.get(li), true), got[0], tag, d.getKey());
            assertClose(tokenMajor(alone.get(li), false), got[1], tag, d.getKey());
          }
        }
      }
    }
  }

  /**
   * --compute-dtype bfloat16 reaches the executors' model: every document's memory is far nearer
   * to what a bfloat16 compute model gives it read alone than to what float32 compute wrote (read
   * in a batch, a few bfloat16 roundings of the activations fall the other way, so not equal).
   */
  @Test
  void bfloat16ComputeInTheJob(@TempDir Path tmp) throws Exception {
    Path input = tmp.resolve("in/docs.jsonl");
    Map<String, long[]> docs = writeCorpus(input);
    Path model = JobFixtures.tinyA().resolve("model");
    EncodeSpec f32 = spec(model, null, "float32", 2, input, "AUTO");
    EncodeSpec bf16 = new EncodeSpec(f32.model(), null, "float32", "Flat", 1024, 2, 4, 16384, 1, f32.input(), null, "bfloat16");
    assertEquals(io.longmem.model.compute.ComputeDType.BFLOAT16, bf16.compute());
    EncodeJob.run(spark, f32, tmp.resolve("f32"), false, 1);
    EncodeJob.run(spark, bf16, tmp.resolve("bf16"), false, 1);
    Checkpoint ckpt = Checkpoint.open(model);
    double fromAlone = 0;
    double fromFloat32 = 0;
    try (LongLlama m = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu(),
        io.longmem.model.compute.ComputeDType.BFLOAT16)) {
      DocumentEncoder enc = new DocumentEncoder(m);
      for (var d : docs.entrySet()) {
        List<MemoryBlock> alone = enc.encode(d.getValue());
        for (int li = 0; li < 2; li++) {
          float[][][] got = JobFixtures.documentMemory(tmp.resolve("bf16"), d.getKey(), li + 1);
          float[][][] full = JobFixtures.documentMemory(tmp.resolve("f32"), d.getKey(), li + 1);
          for (int kv = 0; kv < 2; kv++) {
            float[] a = tokenMajor(alone.get(li), kv == 0);
            int width = got[kv][0].length;
            assertEquals(a.length, got[kv].length * width, d.getKey() + ": token count");
            for (int t = 0; t < got[kv].length; t++) {
              for (int i = 0; i < width; i++) {
                fromAlone += Math.abs(got[kv][t][i] - a[t * width + i]);
                fromFloat32 += Math.abs(got[kv][t][i] - full[kv][t][i]);
              }
            }
          }
        }
      }
    }
    System.out.printf("bf16 job memory: summed abs difference from bf16 read alone %.4g, from the float32 job %.4g%n",
        fromAlone, fromFloat32);
    assertTrue(fromFloat32 > 0 && fromAlone < 0.25 * fromFloat32,
        "bfloat16 job memory " + fromAlone + " from bfloat16 alone, " + fromFloat32 + " from float32");
    InputException bad = assertThrows(InputException.class, () -> new EncodeSpec(f32.model(), null, null, "Flat",
        1024, 2, 4, 16384, 1, f32.input(), null, "bf16"));
    assertTrue(bad.getMessage().contains("--compute-dtype"), bad.getMessage());
  }

  /** job.json holds the plan as it was and the run's final counts: what the corpus of writeCorpus holds. */
  private static void checkJobResult(Path out, Map<String, long[]> docs, int resumed) throws IOException {
    JsonObject job = JsonParser.parseString(Files.readString(out.resolve("job.json"))).getAsJsonObject();
    assertEquals(Manifest.read(out).modelFingerprint(), job.get("modelFingerprint").getAsString());
    assertEquals(3, job.get("shards").getAsInt());
    JsonObject r = job.getAsJsonObject("result");
    assertEquals(docs.size(), r.get("documents").getAsLong());
    assertEquals(docs.values().stream().mapToLong(a -> a.length).sum(), r.get("tokens").getAsLong());
    JsonObject skipped = r.getAsJsonObject("skipped");
    assertEquals(1, skipped.get("empty").getAsLong());
    assertEquals(1, skipped.get("duplicate").getAsLong());
    assertEquals(1, skipped.get("malformed").getAsLong());
    for (String none : new String[] {"noId", "outOfVocabulary", "undecodableIds"}) {
      assertEquals(0, skipped.get(none).getAsLong(), none);
    }
    assertEquals(Manifest.read(out).shards().size(), r.get("shards").getAsInt());
    assertEquals(resumed, r.get("resumedShards").getAsInt());
    assertTrue(r.get("seconds").getAsDouble() > 0);
    assertFalse(java.time.Instant.parse(r.get("finishedAt").getAsString()).isAfter(java.time.Instant.now()));
  }

  /** float32 within 1e-5; bfloat16 identically rounded but for values at a rounding midpoint (see model-worker's ConformanceTest). */
  private static void checkReference(String tag, int layer, String kind, float[][] want, float[][] got) {
    int flips = 0;
    int total = 0;
    for (int t = 0; t < want.length; t++) {
      for (int i = 0; i < want[t].length; i++) {
        double d = Math.abs(want[t][i] - got[t][i]);
        total++;
        if (d > 1e-5) {
          flips++;
          assertTrue(tag.equals("bf16") && d <= Math.max(2e-3, Math.ulp(want[t][i]) * 65536),
              tag + " layer " + layer + " " + kind + " token " + t + "[" + i + "] differs by " + d);
        }
      }
    }
    assertTrue(flips <= total / 100, flips + " of " + total + " elements beyond 1e-5");
  }

  /** A block's keys (or values) [heads, n, dim] as the collection's rows [n, heads * dim]. */
  private static float[] tokenMajor(MemoryBlock b, boolean keys) {
    float[] src = keys ? b.keys() : b.values();
    int n = b.tokens();
    int dim = b.headDim();
    float[] out = new float[src.length];
    for (int h = 0; h < b.heads(); h++) {
      for (int t = 0; t < n; t++) {
        System.arraycopy(src, b.headOffset(h) + t * dim, out, (t * b.heads() + h) * dim, dim);
      }
    }
    return out;
  }

  private static void assertClose(float[] alone, float[][] got, String tag, String doc) {
    int width = got[0].length;
    assertEquals(alone.length, got.length * width, doc + ": token count");
    int flips = 0;
    for (int t = 0; t < got.length; t++) {
      for (int i = 0; i < width; i++) {
        double d = Math.abs(alone[t * width + i] - got[t][i]);
        if (d > 1e-5) {
          flips++;
          assertTrue(tag.equals("bf16") && d <= Math.max(2e-3, Math.ulp(got[t][i]) * 65536),
              doc + " token " + t + " differs by " + d);
        }
      }
    }
    assertTrue(flips <= alone.length / 100, doc + ": " + flips + " elements beyond 1e-5");
  }

  /** Parquet input with its own column names: the book's memory is the reference's. */
  @Test
  void parquetWithConfiguredColumns(@TempDir Path tmp) throws Exception {
    long[] book = JobFixtures.bookIds();
    List<org.apache.spark.sql.Row> rows = List.of(
        org.apache.spark.sql.RowFactory.create("book", Arrays.stream(book).boxed().toList()),
        org.apache.spark.sql.RowFactory.create("tail", Arrays.stream(Arrays.copyOfRange(book, 100, 128)).boxed().toList()));
    var schema = new org.apache.spark.sql.types.StructType()
        .add("doc", org.apache.spark.sql.types.DataTypes.StringType)
        .add("ids", org.apache.spark.sql.types.DataTypes.createArrayType(org.apache.spark.sql.types.DataTypes.LongType));
    Path in = tmp.resolve("books.parquet");
    spark.createDataFrame(rows, schema).write().parquet(in.toString());
    Path out = tmp.resolve("out");
    EncodeSpec spec = new EncodeSpec(JobFixtures.tinyA().resolve("model").toString(), null, "float32", "Flat", 1024, 2,
        4, 16384, 1, new Corpus.Spec(in.toString(), Corpus.Format.AUTO, "doc", "text", "ids"));
    EncodeJob.Report r = EncodeJob.run(spark, spec, out, false, 1);
    assertEquals(2, r.counts().documents());
    assertEquals(128 + 28, r.counts().tokens());
    float[][][] got = JobFixtures.documentMemory(out, "book", 2);
    checkReference("f32", 2, "keys", JobFixtures.reference("f32_book_mem_keys_layer2.npy"), got[0]);
    checkReference("f32", 2, "values", JobFixtures.reference("f32_book_mem_values_layer2.npy"), got[1]);
    // a wrong column name is named before any work
    EncodeSpec wrong = new EncodeSpec(spec.model(), null, "float32", "Flat", 1024, 2, 4, 16384, 1,
        new Corpus.Spec(in.toString(), Corpus.Format.AUTO, "id", "text", "ids"));
    var e = assertThrows(IllegalArgumentException.class, () -> EncodeJob.run(spark, wrong, tmp.resolve("o2"), false, 1));
    assertTrue(e.getMessage().contains("no id column 'id'"), e.getMessage());
  }

  @Test
  void textFilesGoThroughTheTokenizer(@TempDir Path tmp) throws Exception {
    Path model = tmp.resolve("model");
    RandomCheckpoint.write(model, new RandomCheckpoint.Shape(32000, 64, 4, 128, 3, 32, 16, new int[] {1}), 7);
    Path tokenizerFile = JobFixtures.fixtures().resolve("tokenizers/openllama_v2.model");
    Path in = tmp.resolve("books");
    Files.createDirectories(in.resolve("sub"));
    Map<String, String> texts = new LinkedHashMap<>();
    texts.put("a.txt", "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
        .repeat(6));
    texts.put("sub/b.txt", "Il était une fois, dans un pays lointain, un dragon 🐉 qui aimait les mathématiques: ∑ x².");
    for (var t : texts.entrySet()) {
      Files.writeString(in.resolve(t.getKey()), t.getValue());
    }
    byte[] bad = {'O', 'k', ' ', (byte) 0xC3, (byte) 0x28, ' ', 'n', 'o', 't', ' ', 'U', 'T', 'F', '-', '8'};
    Files.write(in.resolve("bad.txt"), bad);
    texts.put("bad.txt", new String(bad, StandardCharsets.UTF_8));
    Files.writeString(in.resolve("empty.txt"), "  \n ");
    Files.writeString(in.resolve(".hidden"), "not a document");
    Path out = tmp.resolve("out");
    EncodeJob.Report r = EncodeJob.run(spark, spec(model, tokenizerFile.toString(), "float32", 2, in, "AUTO"), out,
        false, 1);
    assertEquals(3, r.counts().documents());
    assertEquals(1, r.counts().empty());
    assertEquals(1, r.counts().badUtf8());
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(tokenizerFile);
    Checkpoint ckpt = Checkpoint.open(model);
    long total = 0;
    try (LongLlama m = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu())) {
      DocumentEncoder enc = new DocumentEncoder(m);
      for (var t : texts.entrySet()) {
        long[] ids = Arrays.stream(tok.encodeWithBos(t.getValue())).asLongStream().toArray();
        total += ids.length;
        List<MemoryBlock> alone = enc.encode(ids);
        float[][][] got = JobFixtures.documentMemory(out, t.getKey(), 1);
        assertClose(tokenMajor(alone.get(0), true), got[0], "f32", t.getKey());
        assertClose(tokenMajor(alone.get(0), false), got[1], "f32", t.getKey());
      }
    }
    assertEquals(total, r.counts().tokens());
  }

  @Test
  void twoAttemptsAtOneShardLeaveOneShard(@TempDir Path tmp) throws Exception {
    Path model = JobFixtures.tinyA().resolve("model");
    long[] book = JobFixtures.bookIds();
    Path out = tmp.resolve("out");
    Files.createDirectories(out);
    EncodeSpec spec = spec(model, null, "float32", 1, tmp, "JSONL");
    String fp = Checkpoint.open(model).fingerprint();
    ShardEncoder enc = new ShardEncoder(spec, out, fp);
    List<ShardEncoder.Document> docs = new ArrayList<>();
    for (int i = 0; i < 12; i++) {
      docs.add(new ShardEncoder.Document(String.format("d%02d", i), null, Arrays.copyOfRange(book, i, i + 40), false, false));
    }
    ShardEncoder.Progress none = (d, t, u) -> { };
    ShardEncoder.Result[] second = new ShardEncoder.Result[1];
    // attempt A reads its documents; half-way, a speculative attempt B runs the same shard to the end
    var it = new java.util.Iterator<ShardEncoder.Document>() {
      int i = 0;

      @Override
      public boolean hasNext() {
        return i < docs.size();
      }

      @Override
      public ShardEncoder.Document next() {
        if (i == 6) {
          try {
            second[0] = enc.encode(0, docs.iterator(), "attempt-B", none);
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }
        return docs.get(i++);
      }
    };
    ShardEncoder.Result first = enc.encode(0, it, "attempt-A", none);
    assertEquals(12, second[0].entry().documents().size());
    assertEquals(Manifest.class.getSimpleName(), "Manifest");
    assertEquals(json(second[0].entry()), json(first.entry()), "the attempt that finished second reports the winner");
    assertEquals(List.of(), JobFixtures.files(out.resolve(".staging")), "an attempt's staging files were left");
    assertTrue(Files.exists(out.resolve("shards/shard-00000/shard.json")));
  }

  static String json(Manifest.ShardEntry e) {
    return new com.google.gson.Gson().toJson(e);
  }

  @Test
  void badInputFailsBeforeAnyWork(@TempDir Path tmp) throws Exception {
    Path model = JobFixtures.tinyA().resolve("model");
    Path input = tmp.resolve("in/docs.jsonl");
    writeCorpus(input);
    Path out = tmp.resolve("out");
    var e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(tmp.resolve("nope"), null, null, 2, input, "AUTO"), out, false, 1));
    assertTrue(e.getMessage().contains("nope") && e.getMessage().contains("not a directory"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(model, null, null, 2, tmp.resolve("missing.jsonl"), "AUTO"), out, false, 1));
    assertTrue(e.getMessage().contains("missing.jsonl does not exist"), e.getMessage());
    Path texts = tmp.resolve("texts");
    Files.createDirectories(texts);
    Files.writeString(texts.resolve("a.txt"), "hello");
    e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(model, null, null, 2, texts, "AUTO"), out, false, 1));
    assertTrue(e.getMessage().contains("no tokenizer"), e.getMessage());
    Path emptyDir = tmp.resolve("empty");
    Files.createDirectories(emptyDir);
    e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(model, null, null, 2, emptyDir, "AUTO"), out, false, 1));
    assertTrue(e.getMessage().contains("holds no files"), e.getMessage());
    // a tokenizer that does not belong to the model (32000 pieces, the model has 512)
    String v2 = JobFixtures.fixtures().resolve("tokenizers/openllama_v2.model").toString();
    e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(model, v2, null, 2, texts, "AUTO"), out, false, 1));
    assertTrue(e.getMessage().contains("do not belong together"), e.getMessage());
    assertFalse(Files.exists(out), "a failed check left an output directory");

    // out-of-vocabulary token ids reject the document, not the job
    Path oov = tmp.resolve("oov.jsonl");
    Files.write(oov, List.of(JobFixtures.jsonLine("ok", new long[] {1, 2, 3}),
        JobFixtures.jsonLine("bad", new long[] {1, 999_999})));
    EncodeJob.Report r = EncodeJob.run(spark, spec(model, null, null, 1, oov, "AUTO"), out, false, 1);
    assertEquals(1, r.counts().documents());
    assertEquals(1, r.counts().rejected());
    // a committed collection is not overwritten
    e = assertThrows(IllegalArgumentException.class,
        () -> EncodeJob.run(spark, spec(model, null, null, 1, oov, "AUTO"), out, true, 1));
    assertTrue(e.getMessage().contains("already holds a committed collection"), e.getMessage());
  }
}
