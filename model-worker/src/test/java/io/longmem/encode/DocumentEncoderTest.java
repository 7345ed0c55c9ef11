package io.longmem.encode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.Fixtures;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Documents read side by side in a batch remember what they remember alone. */
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
      List<DocumentEncoder.Encoded> batch = enc.encodeBatch(List.of(shortDoc, book, tinyDoc));
      long[][] docs = {shortDoc, book, tinyDoc};
      for (int b = 0; b < docs.length; b++) {
        DocumentEncoder.Encoded alone = enc.encode(docs[b]);
        assertEquals(alone.tokens(), batch.get(b).tokens());
        for (int l = 0; l < alone.keys().length; l++) {
          assertEquals(alone.keys()[l].length, batch.get(b).keys()[l].length);
          double worst = 0;
          for (int i = 0; i < alone.keys()[l].length; i++) {
            worst = Math.max(worst, Math.abs(alone.keys()[l][i] - batch.get(b).keys()[l][i]));
            worst = Math.max(worst, Math.abs(alone.values()[l][i] - batch.get(b).values()[l][i]));
          }
          assertTrue(worst < 1e-5, "row " + b + " memory layer " + l + " differs by " + worst);
        }
      }
    }
  }
}
