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
      // targets decode to a number; the question is right before them
      List<Integer> digits = new ArrayList<>();
      for (int i = 0; i < b.targets().length; i++) {
        int row = b.positions()[i] / 128;
        if (row == 1) {
          digits.add((int) b.targets()[i]);
        }
      }
      String answer = tok.decode(digits.stream().mapToInt(Integer::intValue).toArray()).strip();
      assertTrue(answer.matches("\\d+"), "answer '" + answer + "'");
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
      int first = -1;
      int count = 0;
      for (int i = 0; i < a.loss().length; i++) {
        if (a.loss()[i]) {
          first = first < 0 ? i : first;
          count++;
        }
      }
      assertTrue(first > question.length && count >= 2 && count <= 6, "answer at " + first + ", " + count + " tokens");
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
