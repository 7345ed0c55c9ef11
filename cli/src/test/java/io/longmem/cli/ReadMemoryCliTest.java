package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import io.longmem.io.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --read-memory}: the kNN read through the command line, and its errors as one line. */
class ReadMemoryCliTest {
  private static final Path TINY = Fixtures.tinyA();

  private static long[] generate(Path tmp, String... readMemory) throws Exception {
    var cases = Fixtures.json(TINY.resolve("cases.json"));
    long[] prompt = Fixtures.concat(Fixtures.ids(cases, "book_ids"), Fixtures.ids(cases, "question_ids"));
    Path ids = tmp.resolve("prompt.json");
    Files.writeString(ids, Json.idList(prompt));
    Path gen = tmp.resolve("gen-" + String.join("-", readMemory).replace(':', '_') + ".json");
    String[] base = {"generate", "--model", TINY.resolve("model").toString(), "--input-ids", ids.toString(),
        "--max-new-tokens", "24", "--greedy", "--last-context-length", "20", "--no-eos", "--output-ids", gen.toString()};
    String[] args = Arrays.copyOf(base, base.length + readMemory.length);
    System.arraycopy(readMemory, 0, args, base.length, readMemory.length);
    CliTestSupport.Run r = CliTestSupport.run(args);
    assertEquals(0, r.code(), r.err());
    assertTrue(r.err().contains("kNN memory in process"), r.err());
    return Json.readIds(gen);
  }

  @Test
  void knnCoveringTheMemoryGeneratesTheReferenceIds(@TempDir Path tmp) throws Exception {
    long[] expected = Fixtures.ids(Fixtures.json(TINY.resolve("cases.json")).getAsJsonObject("checks")
        .getAsJsonObject("bf16"), "greedy_ids");
    // the book (128 tokens) plus what generation moves to memory stays under 1000 pairs
    assertArrayEquals(expected, generate(tmp, "--read-memory", "knn", "--read-k", "1000"));
    assertFalse(Arrays.equals(expected, generate(tmp, "--read-memory", "knn:4")), "top-4 pairs gave the dense ids");
  }

  @Test
  void badReadMemoryIsOneLine() {
    String model = TINY.resolve("model").toString();
    String[][] cases = {
        {"--read-memory", "knn:0"},
        {"--read-memory", "sparse"},
        {"--read-memory", "knn", "--memory", "grpc://127.0.0.1:1"}};
    for (String[] c : cases) {
      String[] args = {"generate", "--model", model, "--input-ids", "x.json", "--max-new-tokens", "3", c[0], c[1]};
      if (c.length > 2) {
        args = Arrays.copyOf(args, args.length + 2);
        args[args.length - 2] = c[2];
        args[args.length - 1] = c[3];
      }
      CliTestSupport.Run r = CliTestSupport.run(args);
      assertEquals(2, r.code(), String.join(" ", c) + ": " + r.err());
      assertTrue(r.err().lines().anyMatch(l -> l.startsWith("longmem generate: --read-memory")), r.err());
      assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }
  }
}
