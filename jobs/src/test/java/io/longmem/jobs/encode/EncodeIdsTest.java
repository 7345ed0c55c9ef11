package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.memory.shard.Manifest;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Document ids are exact strings: ids whose bytes or escapes do not decode (overlong UTF-8, a stray
 * byte, a lone surrogate) are counted and skipped by the real encode job, never merged with the
 * valid id they would decode to (which would drop that valid document as a "duplicate").
 */
class EncodeIdsTest {
  static SparkSession spark;

  @BeforeAll
  static void start() {
    spark = JobFixtures.spark(2);
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  /** id (as a JSON string literal's raw bytes) -> a line with that id and some tokens. */
  private static byte[] line(byte[] idLiteral, long[] tokens) {
    String rest = JobFixtures.jsonLine("", tokens).replaceFirst("\\{\"id\":\"\"", "");
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    b.writeBytes("{\"id\":\"".getBytes(StandardCharsets.US_ASCII));
    b.writeBytes(idLiteral);
    b.writeBytes(("\"" + rest + "\n").getBytes(StandardCharsets.US_ASCII));
    return b.toByteArray();
  }

  private static Map<String, Long> stored(Path collection) throws Exception {
    Map<String, Long> docs = new TreeMap<>();
    for (Manifest.ShardEntry s : Manifest.read(collection).shards()) {
      for (Manifest.DocumentEntry d : s.documents()) {
        docs.put(d.id(), d.end() - d.begin());
      }
    }
    return docs;
  }

  @Test
  void undecodableJsonIdsAreSkippedNotMerged(@TempDir Path tmp) throws Exception {
    long[] book = JobFixtures.bookIds();
    long[] a = Arrays.copyOf(book, 30);
    long[] b = Arrays.copyOfRange(book, 30, 47);
    long[] junk = Arrays.copyOfRange(book, 50, 55);
    ByteArrayOutputStream file = new ByteArrayOutputStream();
    // the undecodable ids come first: merged, they would be kept and the valid ones dropped
    file.writeBytes(line(new byte[] {'x', (byte) 0xC0, (byte) 0xAF}, junk)); // overlong '/'
    file.writeBytes(line("d\\ud800".getBytes(StandardCharsets.US_ASCII), junk)); // lone surrogates
    file.writeBytes(line("d\\udbff".getBytes(StandardCharsets.US_ASCII), junk));
    file.writeBytes(line(new byte[] {'d', (byte) 0xFF}, junk)); // not UTF-8 at all
    file.writeBytes(line("x/".getBytes(StandardCharsets.US_ASCII), a));
    file.writeBytes(line("d?".getBytes(StandardCharsets.US_ASCII), b));
    file.writeBytes(line("\\ud83d\\ude00".getBytes(StandardCharsets.US_ASCII), b)); // a valid pair: kept
    Path in = tmp.resolve("in/docs.jsonl");
    Files.createDirectories(in.getParent());
    Files.write(in, file.toByteArray());
    Path out = tmp.resolve("out");
    EncodeJob.Report r = EncodeJob.run(spark, EncodeJobTest.spec(JobFixtures.tinyA().resolve("model"), null,
        "float32", 1, in, "JSONL"), out, false, 1);
    assertEquals(0, r.counts().duplicates(), r.summary());
    assertEquals(4, r.counts().badId(), r.summary());
    assertEquals(3, r.counts().documents(), r.summary());
    assertEquals(Map.of("x/", 30L, "d?", 17L, "\uD83D\uDE00", 17L), stored(out));
    assertTrue(r.summary().contains("4 with undecodable ids"), r.summary());
  }

  @Test
  void undecodableParquetIdsAreSkippedNotMerged(@TempDir Path tmp) throws Exception {
    long[] book = JobFixtures.bookIds();
    StructType schema = new StructType().add("id", DataTypes.BinaryType)
        .add("token_ids", DataTypes.createArrayType(DataTypes.LongType));
    List<Row> rows = new ArrayList<>();
    rows.add(RowFactory.create(new byte[] {'p', (byte) 0xC0, (byte) 0xAF}, tokens(book, 0, 5)));
    rows.add(RowFactory.create(new byte[] {'q', (byte) 0xED, (byte) 0xA0, (byte) 0x80}, tokens(book, 0, 5))); // CESU surrogate
    rows.add(RowFactory.create("p/".getBytes(StandardCharsets.UTF_8), tokens(book, 0, 25)));
    rows.add(RowFactory.create("q\uFFFD".getBytes(StandardCharsets.UTF_8), tokens(book, 0, 12)));
    Path in = tmp.resolve("in.parquet");
    spark.createDataFrame(rows, schema).coalesce(1).write().parquet(in.toString());
    Path out = tmp.resolve("out");
    EncodeJob.Report r = EncodeJob.run(spark, EncodeJobTest.spec(JobFixtures.tinyA().resolve("model"), null,
        "float32", 1, in, "PARQUET"), out, false, 1);
    assertEquals(0, r.counts().duplicates(), r.summary());
    assertEquals(2, r.counts().badId(), r.summary());
    assertEquals(Map.of("p/", 25L, "q\uFFFD", 12L), stored(out));
  }

  /** A file whose name is not UTF-8 (made by the shell: Java cannot name it) is skipped, not read or merged. */
  @Test
  void undecodableFileNamesAreSkipped(@TempDir Path tmp) throws Exception {
    Path model = tmp.resolve("model");
    io.longmem.model.checkpoint.RandomCheckpoint.write(model,
        new io.longmem.model.checkpoint.RandomCheckpoint.Shape(32000, 64, 4, 128, 3, 32, 16, new int[] {1}), 7);
    String tokenizer = JobFixtures.fixtures().resolve("tokenizers/openllama_v2.model").toString();
    Path in = Files.createDirectories(tmp.resolve("books"));
    Files.writeString(in.resolve("good.txt"), "The grass is green. The sky is blue.");
    Process p = new ProcessBuilder("sh", "-c", "printf 'Another book.' > \"$(printf 'bad\\300\\257.txt')\"")
        .directory(in.toFile()).inheritIO().start();
    assertEquals(0, p.waitFor());
    try (var files = Files.list(in)) {
      assertEquals(2, files.count());
    }
    Path out = tmp.resolve("out");
    EncodeJob.Report r = EncodeJob.run(spark, EncodeJobTest.spec(model, tokenizer, "float32", 1, in, "TEXT"), out,
        false, 1);
    assertEquals(1, r.counts().badId(), r.summary());
    assertEquals(1, r.counts().documents(), r.summary());
    assertEquals(List.of("good.txt"), new ArrayList<>(stored(out).keySet()));
  }

  private static List<Long> tokens(long[] book, int from, int to) {
    List<Long> l = new ArrayList<>();
    for (int i = from; i < to; i++) {
      l.add(book[i]);
    }
    return l;
  }
}
