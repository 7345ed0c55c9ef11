package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.Fixtures;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code bin/longmem train}: a run on a corpus and the passkey task, its resume, and its one-line errors. */
class TrainCommandTest {
  private static final String TOKENIZER = Fixtures.dir("tokenizers").resolve("openllama_v2.model").toString();

  @Test
  void trainsOnACorpusAndPasskeysThenResumes(@TempDir Path tmp) throws Exception {
    Path corpus = tmp.resolve("corpus");
    Files.createDirectories(corpus);
    Files.writeString(corpus.resolve("a.txt"), "The quick brown fox jumps over the lazy dog. ".repeat(20));
    Files.writeString(corpus.resolve("b.txt"), "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(20));
    Path out = tmp.resolve("run");
    String[] common = {"--tokenizer", TOKENIZER, "--data", corpus.toString(), "--passkey-share", "0.5", "--hidden", "32",
        "--layers", "2", "--heads", "2", "--length", "40", "--k", "2", "--batch", "4", "--warmup", "1",
        "--checkpoint-every", "1", "--eval-every", "1", "--eval-batches", "1", "--dtype", "float32"};
    CliTestSupport.Run r = CliTestSupport.run(concat(new String[] {"train", "--out", out.toString(), "--steps", "2"},
        common));
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("train: 2 steps"), r.out());
    assertTrue(Files.isRegularFile(out.resolve("model/tokenizer.model")));
    try (LongLlama m = LongLlama.load(Checkpoint.open(out.resolve("model")), Device.cpu())) {
      assertEquals(2, m.config().numLayers());
      assertEquals(32000, m.config().vocabSize());
    }
    r = CliTestSupport.run(concat(new String[] {"train", "--out", out.toString(), "--steps", "3", "--resume",
        out.resolve("checkpoint").toString()}, common));
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("train: 3 steps"), r.out());
    // continued from a model directory (not a checkpoint): a new run of its own
    Path cont = tmp.resolve("continued");
    r = CliTestSupport.run(concat(new String[] {"train", "--out", cont.toString(), "--steps", "1", "--init",
        out.resolve("model").toString()}, common));
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("train: 2 layers, hidden 32"), r.out());
    assertTrue(Files.isRegularFile(cont.resolve("model/model.safetensors")));
    // the recall task mixed into the synthetic documents, from a new model with a wider start
    Path recall = tmp.resolve("recall");
    r = CliTestSupport.run("train", "--out", recall.toString(), "--steps", "1", "--tokenizer", TOKENIZER, "--hidden", "32",
        "--layers", "2", "--heads", "2", "--length", "40", "--k", "2", "--batch", "4", "--warmup", "1",
        "--eval-every", "1", "--eval-batches", "1", "--dtype", "float32", "--recall-share", "0.7", "--recall-local",
        "0.5", "--recall-pool", "100", "--init-std", "0.05");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("train: 1 steps"), r.out());
  }

  @Test
  void badOptionsAreOneClearLine(@TempDir Path tmp) {
    String out = tmp.resolve("o").toString();
    expect("--batch 6 must be a multiple of --k 4", "train", "--out", out, "--tokenizer", TOKENIZER, "--batch", "6",
        "--k", "4");
    expect("tokenizer /no/such.model does not exist", "train", "--out", out, "--tokenizer", "/no/such.model");
    expect("not a training checkpoint", "train", "--out", out, "--resume", tmp.toString());
    expect("--lr must be a positive number", "train", "--out", out, "--tokenizer", TOKENIZER, "--lr", "0");
    expect("--task must be passkey or none", "train", "--out", out, "--tokenizer", TOKENIZER, "--task", "x");
    expect("no training data", "train", "--out", out, "--tokenizer", TOKENIZER, "--task", "none");
    expect("--recall-share must be in [0, 1]", "train", "--out", out, "--tokenizer", TOKENIZER, "--recall-share", "2");
    expect("the recall pool must hold 11 to 16000 tokens", "train", "--out", out, "--tokenizer", TOKENIZER, "--hidden",
        "16", "--layers", "1", "--heads", "2", "--length", "40", "--recall-share", "0.5", "--recall-pool", "5");
    expect("cannot hold the task line, the key line and the question", "train", "--out", out, "--tokenizer", TOKENIZER,
        "--hidden", "16", "--layers", "1", "--heads", "2", "--length", "32", "--k", "2", "--batch", "2");
    expect("the initial standard deviation must be in (0, 1)", "train", "--out", out, "--tokenizer", TOKENIZER,
        "--hidden", "16", "--layers", "1", "--heads", "2", "--length", "40", "--init-std", "0");
    expect("--length 80 exceeds the model's window", "train", "--out", out, "--tokenizer", TOKENIZER, "--window", "64",
        "--length", "80", "--hidden", "16", "--layers", "1", "--heads", "2");
    expect("needs about", "train", "--out", out, "--tokenizer", TOKENIZER, "--hidden", "65536", "--layers", "64");
    expect("needs about", "train", "--out", out, "--tokenizer", TOKENIZER, "--hidden", "16", "--layers", "1", "--heads",
        "2", "--length", "200000", "--batch", "64");
    expect("input /no/corpus does not exist", "train", "--out", out, "--tokenizer", TOKENIZER, "--data", "/no/corpus");
  }

  private static void expect(String message, String... args) {
    CliTestSupport.Run r = CliTestSupport.run(args);
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains(message), r.err());
    // one line of ours (Spark and Hadoop may log warnings of their own), no stack trace
    assertEquals(1, r.err().lines().filter(l -> l.startsWith("longmem train:")).count(), r.err());
    assertTrue(r.err().lines().noneMatch(l -> l.startsWith("\tat ") || l.contains("Exception")), r.err());
  }

  private static String[] concat(String[] a, String[] b) {
    String[] all = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, all, a.length, b.length);
    return all;
  }
}
