package io.longmem.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.Fixtures;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.generate.Generator;
import java.io.IOException;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Behaviour beyond the fixtures: batches, attention grouping, sampling, bad input. */
class LongLlamaTest {
  private static Checkpoint ckpt;
  private static LongLlama model;
  private static long[] prompt;

  @BeforeAll
  static void load() throws IOException {
    ckpt = Checkpoint.open(Fixtures.tinyA().resolve("model"));
    model = LongLlama.load(ckpt, Device.cpu());
    var cases = Fixtures.json(Fixtures.tinyA().resolve("cases.json"));
    prompt = Fixtures.concat(Fixtures.ids(cases, "book_ids"), Fixtures.ids(cases, "question_ids"));
  }

  @AfterAll
  static void close() {
    model.close();
  }

  private static float[] logits(LongLlama m, long[][] ids, boolean useCache, int lastContext) {
    try (NDManager out = NDManager.newBaseManager(); LongLlamaCache cache = m.newCache(ids.length);
         NDArray a = m.forward(cache, ids, null, useCache, lastContext, LongLlama.Output.ALL_LOGITS, out)) {
      return a.toFloatArray();
    }
  }

  @Test
  void batchRowsMatchSingleSequences() {
    long[] other = prompt.clone();
    java.util.Collections.reverse(java.util.Arrays.asList(java.util.Arrays.stream(other).boxed().toArray()));
    for (int i = 0; i < other.length; i++) {
      other[i] = (prompt[i] * 7 + 3) % 512;
    }
    for (boolean useCache : new boolean[] {false, true}) {
      float[] both = logits(model, new long[][] {prompt, other}, useCache, 20);
      float[] a = logits(model, new long[][] {prompt}, useCache, 20);
      float[] b = logits(model, new long[][] {other}, useCache, 20);
      assertArrayEquals(a, java.util.Arrays.copyOfRange(both, 0, a.length), 1e-5f);
      assertArrayEquals(b, java.util.Arrays.copyOfRange(both, a.length, both.length), 1e-5f);
    }
  }

  @Test
  void attentionGroupingChangesNothing() {
    LongLlamaConfig grouped = ckpt.config().withMemAttentionGrouping(new int[] {1, 5});
    try (LongLlama g = LongLlama.load(ckpt, grouped, Device.cpu())) {
      // same sums in other GEMM shapes: equal up to float32 rounding (the conformance tolerance)
      assertArrayEquals(logits(model, new long[][] {prompt}, false, 16), logits(g, new long[][] {prompt}, false, 16), 1e-4f);
      assertArrayEquals(logits(model, new long[][] {prompt}, true, 20), logits(g, new long[][] {prompt}, true, 20), 1e-4f);
    }
  }

  @Test
  void memoryChangesTheAnswer() {
    // the same question with and without the book in memory must differ: memory is really read
    try (LongLlama noMem = LongLlama.load(ckpt, ckpt.config().withMemLayers(List.of()), Device.cpu())) {
      float[] with = logits(model, new long[][] {prompt}, true, 20);
      float[] without = logits(noMem, new long[][] {prompt}, true, 20);
      int last = with.length - 512;
      double diff = 0;
      for (int i = last; i < with.length; i++) {
        diff = Math.max(diff, Math.abs(with[i] - without[i]));
      }
      assertTrue(diff > 1e-2, "memory had no effect: " + diff);
    }
  }

  /**
   * The local cache outlives the call that filled it: nothing it keeps may point into memory that
   * Java frees. Between the prompt and the next token the garbage collector runs and freed memory
   * is reused and overwritten; the next token's logits must not change (beyond float32 noise).
   */
  @Test
  void localCacheSurvivesGarbageCollection() throws InterruptedException {
    long[][] head = {java.util.Arrays.copyOf(prompt, prompt.length - 1)};
    long[][] next = {{prompt[prompt.length - 1]}};
    float[][] padding = {new float[head[0].length]};
    java.util.Arrays.fill(padding[0], 1f);
    float[] expected;
    float[] churned;
    try (NDManager out = NDManager.newBaseManager()) {
      try (LongLlamaCache cache = model.newCache(1)) {
        model.forward(cache, head, padding, true, 20, LongLlama.Output.LAST_LOGITS, out).close();
        expected = model.forward(cache, next, null, true, 20, LongLlama.Output.LAST_LOGITS, out).toFloatArray();
      }
      try (LongLlamaCache cache = model.newCache(1)) {
        model.forward(cache, head, padding, true, 20, LongLlama.Output.LAST_LOGITS, out).close();
        overwriteFreedNativeMemory(head[0].length * 8, head[0].length * 4); // int64 positions, float padding
        churned = model.forward(cache, next, null, true, 20, LongLlama.Output.LAST_LOGITS, out).toFloatArray();
      }
    }
    assertArrayEquals(expected, churned, 1e-5f); // garbage positions change logits wholesale or fail
  }

  /** Lets the collector free unreachable direct buffers, then fills memory of these sizes with junk. */
  private static void overwriteFreedNativeMemory(int... sizes) throws InterruptedException {
    List<java.nio.ByteBuffer> junk = new java.util.ArrayList<>();
    for (int round = 0; round < 5; round++) {
      System.gc();
      Thread.sleep(50);
      for (int i = 0; i < 64 * sizes.length; i++) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocateDirect(sizes[i % sizes.length]);
        while (b.hasRemaining()) {
          b.put((byte) 0x5a);
        }
        junk.add(b);
      }
    }
    assertTrue(junk.size() > 0);
  }

  @Test
  void samplingIsSeededAndRespectsTopK() {
    Generator gen = new Generator(model, null);
    GenerationOptions opts = new GenerationOptions(12, false, 0.8f, 5, 0.9f, 42L, -1, List.of(), 20);
    long[] a = gen.generate(prompt, opts, true, null).ids();
    long[] b = gen.generate(prompt, opts, true, null).ids();
    assertArrayEquals(a, b, "same seed, same tokens");
    GenerationOptions other = new GenerationOptions(12, false, 0.8f, 5, 0.9f, 43L, -1, List.of(), 20);
    GenerationOptions hot = new GenerationOptions(12, false, 5f, 0, 1f, 43L, -1, List.of(), 20);
    assertTrue(!java.util.Arrays.equals(a, gen.generate(prompt, hot, false, null).ids())
        || !java.util.Arrays.equals(a, gen.generate(prompt, other, false, null).ids()), "seed has an effect");
    Generator.Result r = gen.generate(prompt, opts, true, null);
    for (int i = 0; i < r.ids().length; i++) {
      float[] row = r.stepLogits()[i];
      float chosen = row[(int) r.ids()[i]];
      int higher = 0;
      for (float x : row) {
        if (x > chosen) {
          higher++;
        }
      }
      assertTrue(higher < 5, "token " + i + " is outside the top 5");
    }
  }

  @Test
  void eosStopsGeneration() {
    Generator gen = new Generator(model, null);
    long[] greedy = gen.generate(prompt, GenerationOptions.greedy(10, -1, 20), false, null).ids();
    Generator.Result r = gen.generate(prompt, GenerationOptions.greedy(10, (int) greedy[3], 20), false, null);
    assertEquals("eos", r.stopReason());
    assertArrayEquals(java.util.Arrays.copyOf(greedy, 4), r.ids());
  }

  @Test
  void readReturnsEachRowsRealTokensPerMemoryLayer() {
    long[][] ids = {{1, 5, 7, 9, 11}, {1, 6, 8, 0, 0}};
    float[][] padding = {{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}};
    List<List<MemoryBlock>> rows = model.read(ids, padding, false);
    assertEquals(2, rows.size());
    int heads = model.config().numHeads();
    int dim = model.config().headDim();
    for (int b = 0; b < 2; b++) {
      int n = b == 0 ? 5 : 3;
      List<MemoryBlock> blocks = rows.get(b);
      assertEquals(model.config().memLayers(), blocks.stream().map(MemoryBlock::layer).toList());
      for (MemoryBlock block : blocks) {
        assertArrayEquals(java.util.stream.IntStream.range(0, n).toArray(), block.positions());
        assertEquals(heads, block.heads());
        assertEquals(dim, block.headDim());
        assertEquals((long) heads * n * dim, block.keys().length);
        assertEquals(model.config().memDType().storage(), block.storage());
      }
    }
    // a row read alone remembers what it remembers in the batch
    List<MemoryBlock> alone = model.read(new long[][] {{1, 6, 8}}, null, false).get(0);
    for (int l = 0; l < alone.size(); l++) {
      assertArrayEquals(alone.get(l).keys(), rows.get(1).get(l).keys(), 1e-5f);
      assertArrayEquals(alone.get(l).values(), rows.get(1).get(l).values(), 1e-5f);
    }
    var e = assertThrows(IllegalArgumentException.class,
        () -> model.read(new long[][] {{0, 1, 2}}, new float[][] {{0, 1, 1}}, false));
    assertTrue(e.getMessage().contains("right-padded"), e.getMessage());
  }

  @Test
  void badInputIsAClearError() {
    try (LongLlamaCache cache = model.newCache(1); NDManager m = NDManager.newBaseManager()) {
      var e = assertThrows(IllegalArgumentException.class,
          () -> model.forward(cache, new long[][] {{1, 512}}, null, false, 16, LongLlama.Output.LAST_LOGITS, m));
      assertEquals("token id 512 at row 0, position 1 is outside the vocabulary [0, 512)", e.getMessage());
      e = assertThrows(IllegalArgumentException.class,
          () -> model.forward(cache, new long[][] {{}}, null, false, 16, LongLlama.Output.LAST_LOGITS, m));
      assertTrue(e.getMessage().startsWith("empty input"));
      e = assertThrows(IllegalArgumentException.class,
          () -> model.forward(cache, new long[][] {{1, 2}, {3}}, null, false, 16, LongLlama.Output.LAST_LOGITS, m));
      assertTrue(e.getMessage().contains("batch of 2 sequences"), e.getMessage());
    }
    assertThrows(IllegalArgumentException.class,
        () -> new GenerationOptions(5, false, 0f, 0, 1f, 1, -1, List.of(), 16));
    assertThrows(IllegalArgumentException.class,
        () -> new GenerationOptions(5, false, 1f, 0, 1.5f, 1, -1, List.of(), 16));
    assertThrows(IllegalArgumentException.class, () -> GenerationOptions.greedy(0, -1, 16));
  }
}
