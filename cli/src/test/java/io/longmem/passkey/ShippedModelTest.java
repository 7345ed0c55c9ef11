package io.longmem.passkey;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.encode.DocumentEncoder;
import io.longmem.jobs.encode.ShardEncoder;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.service.InProcessNode;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.retrieve.ServiceMemory;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The model trained here and shipped in conf/models finds the pass key in an 8k-token haystack
 * through an in-process memory endpoint (an exact collection, top-k pairs per query); cut off from
 * memory it does not, so the memory is what finds it.
 */
class ShippedModelTest {
  private static final Path MODEL = Path.of("..", "conf", "models", "passkey-small");
  private static final int TRIALS = 3;

  @Test
  void findsThePassKeyAt8kTokensThroughAnInProcessEndpoint(@TempDir Path tmp) throws Exception {
    // the model is in the repository (conf/models/passkey-small); a tree without it skips
    org.junit.jupiter.api.Assumptions.assumeTrue(java.nio.file.Files.exists(MODEL.resolve("model.safetensors")),
        "no shipped model in " + MODEL);
    Checkpoint ckpt = Checkpoint.open(MODEL);
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(ckpt.tokenizerModel());
    int withoutMemory = 0;
    try (LongLlama model = LongLlama.load(ckpt, Device.cpu())) {
      for (int t = 0; t < TRIALS; t++) {
        Haystack h = Haystack.make(tok, 8192, new Random(1000 + t));
        Path dir = tmp.resolve("trial-" + t);
        write(model, ckpt, dir, h.ids(tok));
        try (MemoryEndpoint endpoint = InProcessNode.open(Map.of("haystack", dir), ckpt.fingerprint())) {
          ServiceMemory memory = new ServiceMemory(endpoint, new ServiceMemory.Options(List.of("haystack"), List.of(),
              32, 0, 0, 60_000, 1), model.config(), ckpt.fingerprint(), 1); // the model's k (BenchCommand)
          Haystack.Answer a = Haystack.ask(model, tok, memory, null);
          assertEquals(h.key(), a.key(), "trial " + t + ": key " + h.key() + " at depth " + h.depth() + ", answer '"
              + a.text() + "'");
        }
        Haystack.Answer none = Haystack.ask(model, tok, new DenseMemory(model.manager()), null);
        withoutMemory += none.key() == h.key() ? 1 : 0;
      }
    }
    assertTrue(withoutMemory <= 1, withoutMemory + " of " + TRIALS + " right with no memory: the memory is not needed");
  }

  private static void write(LongLlama model, Checkpoint ckpt, Path dir, long[] doc) throws Exception {
    var c = model.config();
    try (CollectionWriter w = CollectionWriter.create(dir, ckpt.fingerprint(), ShardEncoder.layout(c),
        c.memDType().pythonName(), "Flat").trainingRows(doc.length)) {
      Manifest.ShardEntry e;
      try (ShardWriter s = w.newShard("shard-00000")) {
        s.append("haystack", new DocumentEncoder(model).encode(doc));
        e = s.finish();
      }
      w.commit(List.of(e));
    }
  }
}
