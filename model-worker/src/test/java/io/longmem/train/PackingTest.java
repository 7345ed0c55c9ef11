package io.longmem.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Document-aware k-packing and the synthetic passkey documents. */
class PackingTest {
  private static SentencePieceTokenizer tokenizer() throws Exception {
    return SentencePieceTokenizer.load(Fixtures.dir("tokenizers").resolve("openllama_v2.model"));
  }

  @Test
  void aSlotsEntriesAreConsecutivePartsOfItsDocuments() {
    // documents 1000+i*100 .. counting up: each slot's stream must continue across entries and batches
    List<Doc> docs = new ArrayList<>();
    for (int d = 0; d < 50; d++) {
      int[] t = new int[7 + d % 5];
      for (int i = 0; i < t.length; i++) {
        t[i] = 1000 * (d + 1) + i;
      }
      docs.add(Doc.text(t));
    }
    Iterator<Doc> it = docs.iterator();
    KPacking p = new KPacking(4, 5, 2, it, null, 0, 1);
    Batch a = p.next();
    Batch b = p.next();
    assertEquals(4, a.size());
    assertEquals(5, a.length());
    // slot 0 = entries 0,1; slot 1 = entries 2,3: entry 1 continues entry 0 (the same document stream)
    for (Batch x : List.of(a, b)) {
      for (int slot = 0; slot < 2; slot++) {
        long[] first = x.ids()[2 * slot];
        long[] second = x.ids()[2 * slot + 1];
        assertTrue(second[0] == first[4] + 1 || second[0] % 1000 == 0, "entry " + (2 * slot + 1) + " does not continue");
      }
    }
    // the slots read different documents (negatives), and batch b continues batch a's streams
    assertTrue(a.ids()[0][0] / 1000 != a.ids()[2][0] / 1000);
    assertTrue(b.ids()[0][0] == a.ids()[1][4] + 1 || b.ids()[0][0] % 1000 == 0);
    // texts are everyone's negatives
    assertArrayEquals(new boolean[4], a.privateEntries());
    // every position has its next token as target (text: all positions count)
    assertEquals(4 * 5, a.positions().length);
    for (int i = 0; i < a.positions().length; i++) {
      int row = a.positions()[i] / 5;
      int t = a.positions()[i] % 5;
      long next = t < 4 ? a.ids()[row][t + 1] : row % 2 == 0 ? a.ids()[row + 1][0] : b.ids()[row - 1][0];
      assertEquals(next, a.targets()[i], "target of " + row + ":" + t);
    }
  }

  @Test
  void passkeyDocumentsEndInTheirAnswerAndOnlyItCounts() throws Exception {
    SentencePieceTokenizer tok = tokenizer();
    PasskeyTask task = new PasskeyTask(tok, 2 * 128 + 1, 3);
    KPacking p = new KPacking(4, 128, 2, null, task::next, 1.0, 5);
    for (int n = 0; n < 3; n++) {
      Batch b = p.next();
      assertTrue(b.positions().length > 0);
      // a passkey prompt's entries are private: no other document sees its key line
      assertArrayEquals(new boolean[] {true, true, true, true}, b.privateEntries());
      // targets decode to a number; the question is right before them
      List<Integer> digits = new ArrayList<>();
      for (int i = 0; i < b.targets().length; i++) {
        int row = b.positions()[i] / 128;
        if (row == 1) {
          digits.add((int) b.targets()[i]);
        }
      }
      String stated = tok.decode(digits.stream().mapToInt(Integer::intValue).toArray()).strip();
      assertTrue(stated.matches("\\d+\\."), "answer '" + stated + "'"); // the key and its full stop
      String answer = stated.substring(0, stated.length() - 1);
      long[] last = b.ids()[1];
      int firstAnswer = b.positions()[0] % 128;
      String before = tok.decode(java.util.Arrays.stream(last, 0, firstAnswer + 1).mapToInt(x -> (int) x).toArray());
      assertTrue(before.endsWith("What is the pass key? The pass key is"), before);
      // the key line is in the document (either entry), with the same key
      String whole = tok.decode(java.util.stream.LongStream.concat(java.util.Arrays.stream(b.ids()[0]),
          java.util.Arrays.stream(b.ids()[1])).mapToInt(x -> (int) x).toArray());
      assertTrue(whole.contains("The pass key is " + answer + ". Remember it. " + answer + " is the pass key."), whole);
      // only answer positions count, and all lie in the document's last entry
      for (int pos : b.positions()) {
        assertTrue(pos / 128 % 2 == 1, "a loss position outside the last entry: " + pos);
      }
    }
    Doc d = task.next();
    assertEquals(257, d.tokens().length);
    assertArrayEquals(new int[] {tok.bosId()}, new int[] {d.tokens()[0]});
  }

  @Test
  void aPasskeyTailMovesTheQuestionAndContextLossAddsOnlyOtherPositions() throws Exception {
    SentencePieceTokenizer tok = tokenizer();
    int[] question = tok.encode("What is the pass key? The pass key is");
    java.util.Set<Integer> ends = new java.util.HashSet<>();
    PasskeyTask answerOnly = new PasskeyTask(tok, 2 * 64 + 1, 9, 0, 40);
    PasskeyTask withContext = new PasskeyTask(tok, 2 * 64 + 1, 9, 0.3, 40);
    for (int n = 0; n < 40; n++) {
      Doc a = answerOnly.next();
      Doc c = withContext.next();
      assertEquals(129, a.tokens().length);
      // the answer: a run of loss positions right after the question; nothing else counts
      int[] targets = lossRun(a);
      int first = targets[0];
      int count = targets[1];
      assertTrue(first > question.length && count >= 3 && count <= 7, "answer at " + first + ", " + count + " tokens");
      // (the question's first word follows a newline in the document: compare what comes after it)
      int[] before = java.util.Arrays.copyOfRange(a.tokens(), first - question.length + 1, first);
      assertArrayEquals(java.util.Arrays.copyOfRange(question, 1, question.length), before,
          "the answer does not follow the question");
      for (int i = first; i < first + count; i++) {
        assertTrue(a.loss()[i]);
      }
      ends.add(first + count);
      // the same draws with a context share: the answer still counts, and about 30% of the rest do
      int extra = 0;
      for (int i = 0; i < c.loss().length; i++) {
        extra += c.loss()[i] ? 1 : 0;
      }
      assertTrue(extra > count + 10 && extra < 129 * 0.6, extra + " positions count");
      assertTrue(!c.loss()[0], "BOS is never a target");
    }
    // the tail is drawn: the answer does not always end the document
    assertTrue(ends.size() > 10, "answer ends " + ends);
    assertTrue(ends.stream().anyMatch(e -> e < 129 - 20), "the question never left the end: " + ends);
  }

  @Test
  void keysInMemoryEndBeforeTheLastEntry() throws Exception {
    SentencePieceTokenizer tok = tokenizer();
    int inMemory = 0;
    int anywhere = 0;
    PasskeyTask forced = new PasskeyTask(tok, 3 * 64 + 1, 4, 0, 40, 128, 1.0);
    PasskeyTask free = new PasskeyTask(tok, 3 * 64 + 1, 4, 0, 40, 0, 0);
    for (int n = 0; n < 30; n++) {
      inMemory += keyEnd(tok, forced.next(), forced.lastKey()) <= 128 ? 1 : 0;
      anywhere += keyEnd(tok, free.next(), free.lastKey()) <= 128 ? 1 : 0;
    }
    assertEquals(30, inMemory, "forced documents with the key line in the last entry");
    assertTrue(anywhere < 30, "with the key anywhere, it never reached the last entry");
  }

  @Test
  void keysAreThePapersAndAsManyShortOnes() {
    java.util.Random r = new java.util.Random(7);
    int[] byDigits = new int[6];
    for (int n = 0; n < 10_000; n++) {
      int key = PasskeyTask.drawKey(r);
      assertTrue(key >= 1 && key <= 50_000, "key " + key);
      byDigits[Integer.toString(key).length()]++;
    }
    // five digits: 4/5 of the paper's half plus 1/5 of the other half (~5,000); four digits ~1,900
    assertTrue(byDigits[5] > 4_500 && byDigits[5] < 5_500, java.util.Arrays.toString(byDigits));
    for (int d = 1; d <= 4; d++) {
      assertTrue(byDigits[d] > 900, d + " digits: " + java.util.Arrays.toString(byDigits));
    }
  }

  @Test
  void recallDocumentsRepeatARunFromMemoryAndOnlyTheRepeatCounts() throws Exception {
    SentencePieceTokenizer tok = tokenizer();
    RecallTask task = new RecallTask(tok, 2 * 64 + 1, 64, 3);
    java.util.Set<Integer> pool = java.util.Arrays.stream(task.pool()).boxed().collect(java.util.stream.Collectors.toSet());
    assertTrue(pool.size() >= 20, "pool of " + pool.size());
    int[] filler = tok.encode(io.longmem.passkey.Passkey.FILLER + " ");
    java.util.Set<Integer> starts = new java.util.HashSet<>();
    for (int n = 0; n < 50; n++) {
      Doc d = task.next();
      assertEquals(129, d.tokens().length);
      assertEquals(tok.bosId(), d.tokens()[0]);
      // the repeat: a run of targets in the last entry, preceded by its own first token
      int[] targets = lossRun(d);
      int first = targets[0];
      int count = targets[1];
      int again = first - 1;
      int n0 = count + 1;
      assertTrue(again >= 64 && n0 >= 8 && n0 <= 48, "repeat at " + again + " of " + n0 + " tokens");
      starts.add(again);
      int[] run = java.util.Arrays.copyOfRange(d.tokens(), again, again + n0);
      for (int t : run) {
        assertTrue(pool.contains(t), "a run token outside the pool");
      }
      // the same run lies wholly before the last entry, and nowhere else in it
      int found = -1;
      for (int at = 1; at + n0 <= 64; at++) {
        if (java.util.Arrays.equals(run, java.util.Arrays.copyOfRange(d.tokens(), at, at + n0))) {
          found = at;
        }
      }
      assertTrue(found > 0, "the run is not in memory");
      // the rest is the filler
      for (int i = 1; i < d.tokens().length; i++) {
        boolean inRun = (i >= found && i < found + n0) || (i >= again && i < again + n0);
        if (!inRun) {
          int at = i;
          assertTrue(java.util.Arrays.stream(filler).anyMatch(f -> f == d.tokens()[at]), "not filler at " + i);
        }
      }
    }
    assertTrue(starts.size() > 10, "the repeat always starts at " + starts);
    // with a local share of 1, the first copy lies in the last entry too, before the repeat
    RecallTask local = new RecallTask(tok, 2 * 64 + 1, 64, 3, 1.0, 0);
    for (int n = 0; n < 30; n++) {
      Doc d = local.next();
      int[] targets = lossRun(d);
      int first = targets[0];
      int count = targets[1];
      int[] run = java.util.Arrays.copyOfRange(d.tokens(), first - 1, first + count);
      boolean before = false;
      for (int at = 64; at + run.length <= first - 1; at++) {
        before |= java.util.Arrays.equals(run, java.util.Arrays.copyOfRange(d.tokens(), at, at + run.length));
      }
      assertTrue(before, "no local first copy before the repeat at " + (first - 1));
    }
    // a larger pool: the asked number of tokens, the same for every seed (training and evaluation)
    int[] big = new RecallTask(tok, 2 * 64 + 1, 64, 3, 0, 100).pool();
    assertEquals(100, big.length);
    assertArrayEquals(big, new RecallTask(tok, 2 * 64 + 1, 64, 99, 0.5, 100).pool());
  }

  /** The one run of loss positions in a document: {first, count}; fails if they are not one run. */
  private static int[] lossRun(Doc d) {
    int first = -1;
    int count = 0;
    for (int i = 0; i < d.loss().length; i++) {
      if (d.loss()[i]) {
        assertTrue(first < 0 || i == first + count, "the targets are not one run");
        first = first < 0 ? i : first;
        count++;
      }
    }
    return new int[] {first, count};
  }

  /** The token index just after the key line's "." in a document. */
  private static int keyEnd(SentencePieceTokenizer tok, Doc d, int key) {
    String line = "The pass key is " + key + ". Remember it.";
    for (int end = 1; end <= d.tokens().length; end++) {
      if (tok.decode(java.util.Arrays.copyOf(d.tokens(), end)).contains(line)) {
        return end;
      }
    }
    throw new AssertionError("no key line in the document");
  }
}
