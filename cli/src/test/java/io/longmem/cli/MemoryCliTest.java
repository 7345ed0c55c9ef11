package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.Fixtures;
import io.longmem.encode.DocumentEncoder;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.io.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate / summarize / passkey with kNN memory (in process over a collection, or an unreachable service). */
class MemoryCliTest {
  static Path collection(Path dir, Checkpoint ckpt, MemDType dtype, String doc, long[] ids) throws Exception {
    try (LongLlama model = LongLlama.load(ckpt, ckpt.config().withMemDType(dtype), Device.cpu());
         CollectionWriter w = CollectionWriter.create(dir, ckpt.fingerprint(), io.longmem.jobs.encode.ShardEncoder.layout(model.config()),
             dtype.pythonName(), "Flat")) {
      Manifest.ShardEntry e;
      try (ShardWriter shard = w.newShard("shard-00000")) {
        shard.append(doc, new DocumentEncoder(model).encode(ids));
        e = shard.finish();
      }
      w.commit(List.of(e));
    }
    return dir;
  }

  @Test
  void generateWithLocalKnnMemoryReproducesTheReferenceIds(@TempDir Path tmp) throws Exception {
    Path tiny = Fixtures.tinyA();
    var cases = Fixtures.json(tiny.resolve("cases.json"));
    long[] book = Fixtures.ids(cases, "book_ids");
    long[] question = Fixtures.ids(cases, "question_ids");
    long[] expected = Fixtures.ids(cases.getAsJsonObject("checks").getAsJsonObject("bf16"), "greedy_ids");
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    Path coll = collection(tmp.resolve("book"), ckpt, MemDType.BFLOAT16, "book", book);
    Path q = tmp.resolve("q.json");
    Files.writeString(q, Json.idList(question));
    var r = CliTestSupport.run("generate", "--model", tiny.resolve("model").toString(), "--input-ids", q.toString(),
        "--max-new-tokens", Integer.toString(expected.length), "--greedy", "--last-context-length", "20",
        "--memory", "local", "--collection", coll.toString(), "--memory-top-k", "256");
    assertEquals(0, r.code(), r.err());
    assertEquals(Json.idList(expected), r.out().strip(), "ids generated against the book served from its collection");
    assertTrue(r.err().contains("top-256 kNN memory from the in-process memory"), r.err());
  }

  /** float16 memory travels as float16 (float16_pairs): the same ids as dense float16 memory. */
  @Test
  void float16MemoryFromTheServiceEqualsDenseFloat16(@TempDir Path tmp) throws Exception {
    Path tiny = Fixtures.tinyA();
    var cases = Fixtures.json(tiny.resolve("cases.json"));
    long[] book = Fixtures.ids(cases, "book_ids");
    long[] question = Fixtures.ids(cases, "question_ids");
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    Path coll = collection(tmp.resolve("book16"), ckpt, MemDType.FLOAT16, "book", book);
    Path prompt = tmp.resolve("prompt.json");
    Files.writeString(prompt, Json.idList(Fixtures.concat(book, question)));
    Path q = tmp.resolve("q.json");
    Files.writeString(q, Json.idList(question));
    var dense = CliTestSupport.run("generate", "--model", tiny.resolve("model").toString(), "--input-ids",
        prompt.toString(), "--max-new-tokens", "16", "--last-context-length", "20", "--mem-dtype", "float16");
    var knn = CliTestSupport.run("generate", "--model", tiny.resolve("model").toString(), "--input-ids", q.toString(),
        "--max-new-tokens", "16", "--last-context-length", "20", "--mem-dtype", "float16", "--memory", "local",
        "--collection", coll.toString(), "--memory-top-k", "200");
    assertEquals(0, dense.code(), dense.err());
    assertEquals(0, knn.code(), knn.err());
    assertEquals(dense.out().strip(), knn.out().strip());
  }

  @Test
  void unreachableMemoryServiceFailsWithOneLine(@TempDir Path tmp) throws Exception {
    int port;
    try (var s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Path q = tmp.resolve("q.json");
    Files.writeString(q, "[1, 2, 3]");
    var r = CliTestSupport.run("generate", "--model", Fixtures.tinyA().resolve("model").toString(), "--input-ids",
        q.toString(), "--max-new-tokens", "2", "--memory", "grpc://127.0.0.1:" + port, "--collection", "books",
        "--memory-deadline-ms", "300", "--memory-attempts", "2");
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().lines().anyMatch(l -> l.startsWith("longmem generate: ") && l.contains("did not answer")), r.err());
    assertTrue(!r.err().contains("\tat "), "a stack trace instead of a message: " + r.err());
    r = CliTestSupport.run("generate", "--model", Fixtures.tinyA().resolve("model").toString(), "--input-ids",
        q.toString(), "--max-new-tokens", "2", "--memory", "http://x", "--collection", "books");
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("grpc://HOST:PORT"), r.err());
  }

  /** A random model with a real tokenizer's vocabulary (32000), its tokenizer.model beside it. */
  static Path textModel(Path dir) throws Exception {
    RandomCheckpoint.write(dir, new RandomCheckpoint.Shape(32000, 64, 4, 128, 3, 32, 16, new int[] {1}), 11);
    Files.copy(Fixtures.dir("tokenizers").resolve("openllama_v2.model"), dir.resolve("tokenizer.model"));
    return dir;
  }

  @Test
  void summarizeReadsTheBookThenGenerates(@TempDir Path tmp) throws Exception {
    Path model = textModel(tmp.resolve("model"));
    String text = "Once upon a time there was a lighthouse keeper who counted the waves. ".repeat(12);
    Path book = tmp.resolve("book.txt");
    Files.writeString(book, text);
    var r = CliTestSupport.run("summarize", "--model", model.toString(), "--book", book.toString(),
        "--max-new-tokens", "5");
    assertEquals(0, r.code(), r.err());
    int tokens = SentencePieceTokenizer.load(model.resolve("tokenizer.model")).encodeWithBos(text).length;
    assertTrue(r.err().contains("read " + tokens + " book tokens"), r.err());
    assertTrue(r.err().contains("generated 5 tokens"), r.err());
    // the same book already encoded: only the instruction is read, the book comes from the collection
    Checkpoint ckpt = Checkpoint.open(model);
    long[] ids = Arrays.stream(SentencePieceTokenizer.load(model.resolve("tokenizer.model")).encodeWithBos(text))
        .asLongStream().toArray();
    Path coll = collection(tmp.resolve("books"), ckpt, MemDType.BFLOAT16, "lighthouse", ids);
    r = CliTestSupport.run("summarize", "--model", model.toString(), "--memory", "local", "--collection",
        "books=" + coll, "--document", "lighthouse", "--max-new-tokens", "5");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.err().contains("read 0 book tokens") && r.err().contains("documents [lighthouse]"), r.err());
    r = CliTestSupport.run("summarize", "--model", model.toString(), "--memory", "local", "--collection",
        "books=" + coll, "--document", "missing", "--max-new-tokens", "5");
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("document 'missing'"), r.err());
  }

  @Test
  void passkeyBuildsThePaperPromptAndScoresAnswers(@TempDir Path tmp) throws Exception {
    Path model = textModel(tmp.resolve("model"));
    var r = CliTestSupport.run("passkey", "--model", model.toString(), "--tokens", "300", "--trials", "2");
    assertEquals(0, r.code(), r.err());
    Matcher m = Pattern.compile("passkey: (\\d) of 2 correct").matcher(r.out());
    assertTrue(m.find(), r.out());
    Matcher t = Pattern.compile("trial 1: (\\d+) tokens, key (\\d+)").matcher(r.out());
    assertTrue(t.find(), r.out());
    int n = Integer.parseInt(t.group(1));
    assertTrue(n > 250 && n <= 300, "prompt of " + n + " tokens for --tokens 300");
  }
}
