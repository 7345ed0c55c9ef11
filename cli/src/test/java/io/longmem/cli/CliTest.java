package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import io.longmem.io.Json;
import io.longmem.io.Npy;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command-line contract, run in process as bin/longmem runs it. */
class CliTest {
  private static final Path TINY = Fixtures.tinyA();

  private static CliTestSupport.Run run(String... args) {
    return CliTestSupport.run(args);
  }

  @Test
  void tokenizePrintsIds() {
    CliTestSupport.Run r = run("tokenize", "--tokenizer", Fixtures.dir("tokenizers").resolve("openllama_v1.model").toString(),
        "--text", "Hello world!");
    assertEquals(0, r.code(), r.err());
    assertEquals("[16644, 924, 31905]", r.out().trim());
  }

  @Test
  void logitsAndGenerateReproduceTheReference(@TempDir Path tmp) throws Exception {
    var cases = Fixtures.json(TINY.resolve("cases.json"));
    long[] prompt = Fixtures.concat(Fixtures.ids(cases, "book_ids"), Fixtures.ids(cases, "question_ids"));
    Path ids = tmp.resolve("prompt.json");
    Files.writeString(ids, Json.idList(prompt));
    Path out = tmp.resolve("logits.npy");
    CliTestSupport.Run r = run("logits", "--model", TINY.resolve("model-bf16").toString(), "--input-ids", ids.toString(),
        "--output", out.toString(), "--mem-dtype", "float32");
    assertEquals(0, r.code(), r.err());
    Npy.Array got = Npy.read(out);
    Npy.Array want = Npy.read(TINY.resolve("f32_prompt_logits_nocache.npy"));
    assertArrayEquals(want.shape(), got.shape());
    assertArrayEquals(want.data(), got.data(), 1e-4f);

    Path gen = tmp.resolve("gen.json");
    Path steps = tmp.resolve("steps.npy");
    r = run("generate", "--model", TINY.resolve("model-bin").toString(), "--input-ids", ids.toString(),
        "--max-new-tokens", "24", "--greedy", "--last-context-length", "20", "--no-eos",
        "--output-ids", gen.toString(), "--output-step-logits", steps.toString());
    assertEquals(0, r.code(), r.err());
    long[] expected = Fixtures.ids(cases.getAsJsonObject("checks").getAsJsonObject("bf16"), "greedy_ids");
    assertArrayEquals(expected, Json.readIds(gen));
    assertArrayEquals(new long[] {24, 512}, Npy.read(steps).shape());
    assertTrue(r.err().contains("tokens/s"), r.err());
  }

  @Test
  void userErrorsAreOneClearLine(@TempDir Path tmp) throws Exception {
    Path ids = tmp.resolve("ids.json");
    Files.writeString(ids, "[1, 2, 99999]");
    String model = TINY.resolve("model").toString();
    CliTestSupport.Run r = run("logits", "--model", model, "--input-ids", ids.toString(), "--output", tmp.resolve("o.npy").toString());
    assertEquals(2, r.code());
    assertTrue(r.err().contains("token id 99999 at row 0, position 2 is outside the vocabulary"), r.err());
    assertTrue(!Files.exists(tmp.resolve("o.npy")), "no output on failure");

    Files.writeString(ids, "[]");
    r = run("generate", "--model", model, "--input-ids", ids.toString(), "--max-new-tokens", "3");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("empty prompt"), r.err());

    Files.writeString(ids, "[1, 2]");
    r = run("generate", "--model", model, "--input-ids", ids.toString(), "--max-new-tokens", "3", "--greedy",
        "--temperature", "0.7");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--greedy contradicts"), r.err());

    r = run("generate", "--model", model, "--prompt", "hello", "--max-new-tokens", "3");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("needs a tokenizer"), r.err());

    r = run("logits", "--model", tmp.resolve("nope").toString(), "--input-ids", ids.toString(), "--output", "x.npy");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("does not exist"), r.err());

    r = run("generate", "--model", model, "--input-ids", ids.toString(), "--max-new-tokens", "3",
        "--mem-dtype", "int8");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("mem_dtype must be"), r.err());

    r = run("generate", "--model", model, "--input-ids", ids.toString(), "--max-new-tokens", "3",
        "--compute-dtype", "bf16");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--compute-dtype must be float32 or bfloat16"), r.err());
    assertEquals(1, r.err().strip().lines().count(), r.err());
  }

  @Test
  void bfloat16ComputeFromTheCommandLine(@TempDir Path tmp) throws Exception {
    var cases = Fixtures.json(TINY.resolve("cases.json"));
    Path ids = tmp.resolve("prompt.json");
    Files.writeString(ids, Json.idList(Fixtures.concat(Fixtures.ids(cases, "book_ids"), Fixtures.ids(cases, "question_ids"))));
    Path out = tmp.resolve("logits.npy");
    CliTestSupport.Run r = run("logits", "--model", TINY.resolve("model").toString(), "--input-ids", ids.toString(),
        "--output", out.toString(), "--mem-dtype", "float32", "--compute-dtype", "bfloat16");
    assertEquals(0, r.code(), r.err());
    float[] got = Npy.read(out).data();
    float[] f32 = Npy.read(TINY.resolve("f32_prompt_logits_nocache.npy")).data();
    float[] torchBf16 = Npy.read(TINY.resolve("torch_bf16_prompt_logits_nocache.npy")).data();
    double ours = 0;
    double reference = 0;
    for (int i = 0; i < f32.length; i++) {
      ours = Math.max(ours, Math.abs(got[i] - f32[i]));
      reference = Math.max(reference, Math.abs(torchBf16[i] - f32[i]));
    }
    assertTrue(ours > 1e-3 && ours <= 2 * reference, ours + " from float32, the reference's bfloat16 " + reference);

    r = run("bench", "model", "--layers", "2", "--hidden", "64", "--heads", "4", "--intermediate", "172",
        "--vocab", "512", "--window", "32", "--last-context-length", "16", "--tokens", "64", "--decode-tokens", "4",
        "--checkpoint-dir", tmp.resolve("ck").toString(), "--compute-dtype", "bfloat16");
    assertEquals(0, r.code(), r.err());
    for (String line : new String[] {"float32 prefill: 64 tokens", "bfloat16 prefill: 64 tokens", "GEMM bound:",
        "decode floor:", "bfloat16/float32 in this run"}) {
      assertTrue(r.out().contains(line), r.out());
    }

    // bench encode with bfloat16: the Spark job in both dtypes, every token encoded by each
    r = run("bench", "encode", "--dir", tmp.resolve("enc").toString(), "--documents", "4", "--tokens-per-document",
        "40", "--hidden", "64", "--heads", "4", "--layers", "3", "--mem-layers", "1,2", "--window", "16", "--shards",
        "2", "--parallelism", "2", "--compute-dtype", "bfloat16");
    assertEquals(0, r.code(), r.err());
    for (String line : new String[] {"float32 compute: 4 documents, 160 tokens", "bfloat16 compute: 4 documents, 160 tokens",
        "bfloat16 / float32 encode tokens/s in this run"}) {
      assertTrue(r.out().contains(line), r.out());
    }
  }

  @Test
  void mismatchedTokenizerIsRefused(@TempDir Path tmp) throws Exception {
    // a copy of tiny-a with a tokenizer.model beside it is used for --prompt
    Path dir = Files.createDirectories(tmp.resolve("ckpt"));
    Files.copy(TINY.resolve("model/config.json"), dir.resolve("config.json"));
    Files.copy(TINY.resolve("model/model.safetensors"), dir.resolve("model.safetensors"));
    Files.copy(Fixtures.dir("tokenizers").resolve("openllama_v2.model"), dir.resolve("tokenizer.model"));
    // the tokenizer's 32000 pieces do not fit the tiny 512-token model: refused
    CliTestSupport.Run r = run("generate", "--model", dir.toString(), "--prompt", "The pass key is", "--max-new-tokens", "4");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("do not belong together"), r.err());
  }

  @Test
  void benchRunsOnASmallShape(@TempDir Path tmp) {
    CliTestSupport.Run r = run("bench", "model", "--layers", "3", "--hidden", "64", "--heads", "4", "--intermediate", "172",
        "--vocab", "512", "--window", "32", "--last-context-length", "16", "--tokens", "100", "--decode-tokens", "40",
        "--checkpoint-dir", tmp.resolve("ck").toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("prefill: 100 tokens"), r.out());
    assertTrue(r.out().contains("decode: 40 tokens"), r.out());
  }
}
