package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.SessionBlocks;
import io.longmem.memory.api.WireFormatException;
import io.longmem.memory.grpc.AppendSessionRequest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A session's exact top-k against brute force over every pair appended, kept here token by token
 * as the blocks were built (not from the session's own arrays): appends of blocks of many sizes
 * (so the head-major runs grow several times), positions as given or counted on, answers that
 * stay right while later appends grow the runs, and the limits and checks of {@link Sessions}.
 */
class SessionTest {
  static final int HEADS = 3;
  static final int DIM = 8;
  static final int LAYER = 4;

  /** One appended token, as the test remembers it: per head its key and value, and its position. */
  record Token(float[][] keys, float[][] values, int position) {}

  /** A block of n random tokens at the given positions; the tokens are added to {@code truth}. */
  static MemoryBlock block(Random r, int[] positions, List<Token> truth) {
    int n = positions.length;
    float[] keys = new float[HEADS * n * DIM];
    float[] values = new float[HEADS * n * DIM];
    for (int t = 0; t < n; t++) {
      float[][] k = new float[HEADS][DIM];
      float[][] v = new float[HEADS][DIM];
      for (int h = 0; h < HEADS; h++) {
        for (int d = 0; d < DIM; d++) {
          k[h][d] = (float) r.nextGaussian();
          v[h][d] = (float) r.nextGaussian();
          keys[(h * n + t) * DIM + d] = k[h][d];
          values[(h * n + t) * DIM + d] = v[h][d];
        }
      }
      truth.add(new Token(k, v, positions[t]));
    }
    return new MemoryBlock(LAYER, "", positions, HEADS, DIM, keys, values, MemoryBlock.Storage.FLOAT32);
  }

  static int[] range(int from, int n) {
    int[] p = new int[n];
    Arrays.setAll(p, i -> from + i);
    return p;
  }

  static SearchQuery query(String session, float[] q, int queries, int k) {
    return new SearchQuery(List.of(), List.of(session), LAYER, HEADS, queries, DIM, q, k, List.of(), 0, 0, 0);
  }

  static float dot(float[] q, int off, float[] k) {
    double s = 0;
    for (int d = 0; d < DIM; d++) {
      s += (double) q[off + d] * k[d];
    }
    return (float) s;
  }

  /** Every head and query of {@code hits} holds the brute-force top-k of {@code truth}, in order. */
  static void assertExact(Hits hits, List<Token> truth, float[] q, int queries, int k) {
    for (int h = 0; h < HEADS; h++) {
      Hits.Head head = hits.head(h);
      float[][] kv = head.keysAndValues();
      int[] positions = head.pairPosition();
      for (int i = 0; i < queries; i++) {
        int off = (h * queries + i) * DIM;
        int hh = h;
        List<Token> ranked = new ArrayList<>(truth);
        ranked.sort(Comparator.comparingDouble((Token t) -> -dot(q, off, t.keys()[hh])));
        for (int j = 0; j < k; j++) {
          int slot = head.slots()[i * k + j];
          String at = "head " + h + ", query " + i + ", rank " + j;
          if (j >= ranked.size()) {
            assertEquals(-1, slot, at + ": fewer pairs than k");
            continue;
          }
          Token want = ranked.get(j);
          assertTrue(slot >= 0, at + ": missing");
          assertEquals(dot(q, off, want.keys()[h]), head.scores()[i * k + j], 1e-4f, at + ": score");
          assertEquals(want.position(), positions[slot], at + ": position");
          assertArrayEquals(want.keys()[h], Arrays.copyOfRange(kv[0], slot * DIM, (slot + 1) * DIM), at + ": key");
          assertArrayEquals(want.values()[h], Arrays.copyOfRange(kv[1], slot * DIM, (slot + 1) * DIM), at + ": value");
        }
      }
    }
  }

  static float[] randomQuery(Random r, int queries) {
    float[] q = new float[HEADS * queries * DIM];
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) r.nextGaussian();
    }
    return q;
  }

  @Test
  void appendsOfManyBlocksAreSearchedExactlyWithTheirPositions() {
    Random r = new Random(11);
    List<Token> truth = new ArrayList<>();
    try (Session s = new Session("s", List.of(LAYER, 6), HEADS, DIM, 10_000)) {
      int next = 100;
      long held = 0;
      for (int n : new int[] {1, 7, 30, 3, 64, 1, 17}) {
        // positions as the worker sends them, with a gap between blocks (only their order is the count)
        MemoryBlock b = block(r, range(next, n), truth);
        next += n + 5;
        held += n;
        assertEquals(held, s.append(b));
      }
      assertEquals(held, s.tokens(LAYER));
      assertEquals(0, s.tokens(6));
      int queries = 4;
      for (int k : new int[] {1, 5, 40, 200}) {
        float[] q = randomQuery(r, queries);
        assertExact(s.search(query("s", q, queries, k)), truth, q, queries, k);
      }
    }
  }

  @Test
  void anAnswerStaysRightWhileLaterAppendsGrowTheRuns() {
    Random r = new Random(12);
    List<Token> truth = new ArrayList<>();
    try (Session s = new Session("s", List.of(LAYER), HEADS, DIM, 10_000)) {
      s.append(block(r, range(0, 5), truth));
      float[] q = randomQuery(r, 2);
      Hits before = s.search(query("s", q, 2, 5));
      List<Token> then = List.copyOf(truth);
      s.append(block(r, range(5, 500), truth)); // replaces every run
      assertExact(before, then, q, 2, 5);
      assertExact(s.search(query("s", q, 2, 9)), truth, q, 2, 9);
    }
  }

  @Test
  void aRequestWithoutPositionsCountsOnFromTheLayersTokens() {
    Random r = new Random(13);
    List<Token> truth = new ArrayList<>();
    try (Session s = new Session("s", List.of(LAYER), HEADS, DIM, 10_000)) {
      s.append(block(r, new int[] {40, 41, 42}, truth));
      List<Token> counted = new ArrayList<>();
      s.append(block(r, range(0, 4), counted), false);
      for (int t = 0; t < counted.size(); t++) {
        Token c = counted.get(t);
        truth.add(new Token(c.keys(), c.values(), 3 + t)); // 0.. in arrival order: after the 3 held
      }
      float[] q = randomQuery(r, 3);
      assertExact(s.search(query("s", q, 3, 7)), truth, q, 3, 7);
    }
  }

  private static final String ME = "worker";

  @Test
  void sessionsKeepTheirLimitsAndChecks() {
    Random r = new Random(14);
    try (Sessions sessions = new Sessions(2, 10)) {
      String id = sessions.create(ME, List.of(LAYER), HEADS, DIM);
      List<Token> truth = new ArrayList<>();
      assertEquals(8, sessions.append(id, ME, block(r, range(0, 8), truth), true));
      RequestException full = assertThrows(RequestException.class,
          () -> sessions.append(id, ME, block(r, range(8, 3), new ArrayList<>()), true));
      assertEquals(RequestException.Kind.RESOURCE_EXHAUSTED, full.kind());
      assertEquals(8, sessions.get(id, ME).tokens(LAYER), "a refused append adds nothing");
      assertEquals(10, sessions.append(id, ME, block(r, range(8, 2), truth), true), "up to the limit");

      String other = sessions.create(ME, List.of(LAYER), HEADS, DIM);
      MemoryBlock nan = block(r, range(0, 2), new ArrayList<>());
      nan.values()[5] = Float.NaN;
      assertEquals(RequestException.Kind.INVALID_ARGUMENT,
          assertThrows(RequestException.class, () -> sessions.append(other, ME, nan, true)).kind());
      MemoryBlock narrow = new MemoryBlock(LAYER, "", range(0, 1), HEADS, DIM / 2, new float[HEADS * DIM / 2],
          new float[HEADS * DIM / 2], MemoryBlock.Storage.FLOAT32);
      assertEquals(RequestException.Kind.INVALID_ARGUMENT,
          assertThrows(RequestException.class, () -> sessions.append(other, ME, narrow, true)).kind());
      MemoryBlock elsewhere = new MemoryBlock(LAYER + 1, "", range(0, 1), HEADS, DIM, new float[HEADS * DIM],
          new float[HEADS * DIM], MemoryBlock.Storage.FLOAT32);
      assertEquals(RequestException.Kind.INVALID_ARGUMENT,
          assertThrows(RequestException.class, () -> sessions.append(other, ME, elsewhere, true)).kind());
      assertEquals(0, sessions.get(other, ME).tokens(LAYER));
      assertEquals(RequestException.Kind.NOT_FOUND,
          assertThrows(RequestException.class, () -> sessions.append("nope", ME, nan, true)).kind());
      assertEquals(RequestException.Kind.RESOURCE_EXHAUSTED,
          assertThrows(RequestException.class, () -> sessions.create(ME, List.of(LAYER), HEADS, DIM)).kind());
    }
  }

  @Test
  void aBlockTravelsAsItsRequestAndBack() {
    Random r = new Random(15);
    MemoryBlock b = block(r, new int[] {9, 4, 12}, new ArrayList<>());
    AppendSessionRequest req = SessionBlocks.toRequest("s-1", b);
    assertEquals("s-1", req.getSession());
    assertEquals(LAYER, req.getLayer());
    assertEquals(3, req.getTokens());
    assertEquals(List.of(9, 4, 12), req.getPositionsList());
    assertEquals(HEADS * 3 * DIM * 4, req.getKeys().size());
    MemoryBlock back = SessionBlocks.fromRequest(req, HEADS, DIM);
    assertTrue(SessionBlocks.positioned(req));
    assertEquals(LAYER, back.layer());
    assertArrayEquals(b.positions(), back.positions());
    assertArrayEquals(b.keys(), back.keys());
    assertArrayEquals(b.values(), back.values());

    AppendSessionRequest bare = req.toBuilder().clearPositions().build();
    assertEquals(false, SessionBlocks.positioned(bare));
    assertArrayEquals(new int[] {0, 1, 2}, SessionBlocks.fromRequest(bare, HEADS, DIM).positions());
    for (AppendSessionRequest bad : List.of(req.toBuilder().setTokens(2).build(),
        req.toBuilder().setTokens(0).build(), req.toBuilder().addPositions(13).build(),
        req.toBuilder().setValues(req.getValues().substring(1)).build())) {
      assertThrows(WireFormatException.class, () -> SessionBlocks.fromRequest(bad, HEADS, DIM), bad.toString());
    }
    assertThrows(WireFormatException.class, () -> SessionBlocks.fromRequest(req, HEADS, DIM * 2));
  }
}
