package io.longmem.encode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.Fixtures;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.memory.ReadMemory;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Documents read side by side in a batch remember what they remember alone; with a kNN read whose
 * k covers the memory, what dense memory remembers (padding never reaches either).
 */
class DocumentEncoderTest {
  @Test
  void documentsReadSideBySideRememberWhatTheyRememberAlone() throws Exception {
    Path tiny = Fixtures.tinyA();
    long[] book = Fixtures.ids(Fixtures.json(tiny.resolve("cases.json")), "book_ids");
    long[] shortDoc = java.util.Arrays.copyOfRange(book, 40, 110); // 70 tokens: ends mid-window
    long[] tinyDoc = java.util.Arrays.copyOfRange(book, 5, 8);
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    try (LongLlama model = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu())) {
      DocumentEncoder enc = new DocumentEncoder(model);
      List<List<MemoryBlock>> batch = enc.encodeBatch(List.of(shortDoc, book, tinyDoc));
      long[][] docs = {shortDoc, book, tinyDoc};
      for (int b = 0; b < docs.length; b++) {
        List<MemoryBlock> alone = enc.encode(docs[b]);
        for (int l = 0; l < alone.size(); l++) {
          MemoryBlock a = alone.get(l);
          MemoryBlock together = batch.get(b).get(l);
          assertEquals(docs[b].length, together.tokens());
          assertEquals(a.tokens(), together.tokens());
          assertEquals(a.keys().length, together.keys().length);
          double worst = 0;
          for (int i = 0; i < a.keys().length; i++) {
            worst = Math.max(worst, Math.abs(a.keys()[i] - together.keys()[i]));
            worst = Math.max(worst, Math.abs(a.values()[i] - together.values()[i]));
          }
          assertTrue(worst < 1e-5, "row " + b + " memory layer " + l + " differs by " + worst);
        }
      }
    }
  }

  @Test
  void aPaddedKnnReadCoveringTheMemoryRemembersWhatDenseRemembers() throws Exception {
    Path tiny = Fixtures.tinyA();
    long[] book = Fixtures.ids(Fixtures.json(tiny.resolve("cases.json")), "book_ids");
    List<long[]> docs = List.of(java.util.Arrays.copyOfRange(book, 40, 110), book, java.util.Arrays.copyOfRange(book, 5, 8));
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    try (LongLlama model = LongLlama.load(ckpt, ckpt.config().withMemDType(MemDType.FLOAT32), Device.cpu())) {
      List<List<MemoryBlock>> dense = new DocumentEncoder(model).encodeBatch(docs);
      List<List<MemoryBlock>> knn = new DocumentEncoder(model, false, ReadMemory.parse("knn:128", 0)).encodeBatch(docs);
      for (int b = 0; b < docs.size(); b++) {
        for (int l = 0; l < dense.get(b).size(); l++) {
          MemoryBlock d = dense.get(b).get(l);
          MemoryBlock k = knn.get(b).get(l);
          assertEquals(docs.get(b).length, k.tokens());
          double worst = 0;
          for (int i = 0; i < d.keys().length; i++) {
            worst = Math.max(worst, Math.abs(d.keys()[i] - k.keys()[i]));
            worst = Math.max(worst, Math.abs(d.values()[i] - k.values()[i]));
          }
          assertTrue(worst < 1e-5, "row " + b + " memory layer " + l + " differs by " + worst);
        }
      }
    }
  }
}
