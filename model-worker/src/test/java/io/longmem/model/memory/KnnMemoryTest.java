package io.longmem.model.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import io.longmem.Fixtures;
import io.longmem.io.InputException;
import io.longmem.io.Npy;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The kNN read against the reference on the conformance fixture: with k covering the memory every
 * query gets every pair, so the logits (and what a read remembers) are the reference's; with a
 * small k they are not. And the inverted file finds most of the exact top-k on a memory of many
 * windows.
 */
class KnnMemoryTest {
  private static final Path TINY = Fixtures.tinyA();
  private static Checkpoint ckpt;
  private static long[] book;
  private static long[] prompt;

  @BeforeAll
  static void fixture() throws Exception {
    ckpt = Checkpoint.open(TINY.resolve("model"));
    var cases = Fixtures.json(TINY.resolve("cases.json"));
    book = Fixtures.ids(cases, "book_ids");
    prompt = Fixtures.concat(book, Fixtures.ids(cases, "question_ids"));
  }

  private static LongLlama load() {
    return LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu());
  }

  /** The prompt read as the conformance test reads it (cache on, last 20 tokens local): all logits. */
  private static float[] logits(LongLlama model, ReadMemory read) {
    var c = model.config();
    try (NDManager out = NDManager.newBaseManager();
         LongLlamaCache cache = model.newCache(1, read.create(model.manager(), 1, c.numHeads(), c.headDim()))) {
      return model.forward(cache, new long[][] {prompt}, null, true, 20, LongLlama.Output.ALL_LOGITS, out)
          .toFloatArray();
    }
  }

  private static double worst(float[] a, float[] b) {
    assertEquals(a.length, b.length);
    double w = 0;
    for (int i = 0; i < a.length; i++) {
      w = Math.max(w, Math.abs(a[i] - b[i]));
    }
    return w;
  }

  @ParameterizedTest
  @ValueSource(strings = {"knn:128", "exact-knn:128", "knn:1000"})
  void kCoveringTheMemoryGivesTheReferenceLogits(String spec) throws Exception {
    float[] want = Npy.read(TINY.resolve("f32_prompt_logits_cached.npy")).data();
    try (LongLlama model = load()) {
      double w = worst(logits(model, ReadMemory.parse(spec, 0)), want);
      assertTrue(w < 1e-4, spec + ": logits differ from the reference by " + w);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"knn:4", "exact-knn:4"})
  void smallKIsNotDense(String spec) throws Exception {
    float[] want = Npy.read(TINY.resolve("f32_prompt_logits_cached.npy")).data();
    try (LongLlama model = load()) {
      double w = worst(logits(model, ReadMemory.parse(spec, 0)), want);
      assertTrue(w > 1e-3, spec + ": top-4 of 128 remembered pairs gave the dense logits (within " + w + ")");
    }
  }

  @Test
  void aKnnReadRemembersWhatTheReferenceRemembers() throws Exception {
    try (LongLlama model = load()) {
      List<MemoryBlock> blocks = model.read(new long[][] {book}, null, false, ReadMemory.parse("knn", 128)).get(0);
      for (MemoryBlock block : blocks) {
        assertEquals(128, block.tokens());
        for (int kind = 0; kind < 2; kind++) {
          String file = "f32_book_mem_" + (kind == 0 ? "keys" : "values") + "_layer" + block.layer() + ".npy";
          double w = worst(kind == 0 ? block.keys() : block.values(), Npy.read(TINY.resolve(file)).data());
          assertTrue(w < 1e-5, file + ": differs by " + w);
        }
      }
    }
  }

  /**
   * The inverted file against the exact scan on 8 windows of clustered keys (as a layer's keys
   * are: a window's tokens share topics): the recall of its top-k.
   */
  @Test
  void ivfFindsMostOfTheExactTopK() {
    int dim = 32;
    int window = 2048;
    int k = 32;
    SplittableRandom r = new SplittableRandom(3);
    HeadIndex ivf = new HeadIndex(dim, HeadIndex.Search.IVF);
    HeadIndex exact = new HeadIndex(dim, HeadIndex.Search.EXACT);
    float[][] topics = new float[64][dim];
    for (float[] t : topics) {
      for (int d = 0; d < dim; d++) {
        t[d] = (float) r.nextGaussian() * 2;
      }
    }
    for (int w = 0; w < 8; w++) {
      float[] block = new float[window * dim];
      for (int i = 0; i < window; i++) {
        float[] t = topics[r.nextInt(topics.length)];
        for (int d = 0; d < dim; d++) {
          block[i * dim + d] = t[d] + (float) r.nextGaussian();
        }
      }
      ivf.add(block, 0, block, 0, dim, window);
      exact.add(block, 0, block, 0, dim, window);
    }
    int found = 0;
    int queries = 200;
    for (int i = 0; i < queries; i++) {
      float[] q = new float[dim];
      float[] t = topics[r.nextInt(topics.length)];
      for (int d = 0; d < dim; d++) {
        q[d] = t[d] + (float) r.nextGaussian();
      }
      Set<Integer> truth = new HashSet<>();
      Arrays.stream(exact.top(q, 0, k)).forEach(truth::add);
      assertEquals(k, truth.size());
      int[] got = ivf.top(q, 0, k);
      assertEquals(k, got.length);
      for (int j : got) {
        found += truth.contains(ivf.tokenAt(j)) ? 1 : 0;
      }
    }
    double recall = found / (double) (queries * k);
    assertTrue(recall > 0.8, "IVF recall@" + k + " over " + 8 * window + " keys: " + recall);
  }

  @Test
  void badSpecsAreRefusedByName() {
    assertEquals(ReadMemory.DENSE, ReadMemory.parse("dense", 8));
    assertEquals(new ReadMemory(ReadMemory.Kind.KNN, 32), ReadMemory.parse("knn:32", 8));
    assertEquals(new ReadMemory(ReadMemory.Kind.KNN, 8), ReadMemory.parse("knn", 8));
    for (String bad : new String[] {"knn:0", "knn:x", "dense:4", "faiss", "knn:-3"}) {
      InputException e = assertThrows(InputException.class, () -> ReadMemory.parse(bad, 8), bad);
      assertTrue(e.getMessage().contains("--read-memory"), e.getMessage());
    }
  }
}
