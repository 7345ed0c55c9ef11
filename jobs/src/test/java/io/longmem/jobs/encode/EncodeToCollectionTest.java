package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.Fixtures;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.encode.DocumentEncoder;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.io.Npy;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tiny-a book encoded into a collection holds exactly the reference implementation's memory. */
class EncodeToCollectionTest {
  @Test
  void bookMemoryInShardsIsTheReferenceMemory(@TempDir Path tmp) throws Exception {
    Path tiny = Fixtures.tinyA();
    long[] book = Fixtures.ids(Fixtures.json(tiny.resolve("cases.json")), "book_ids");
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model-bin"));
    for (String tag : new String[] {"f32", "bf16"}) {
      MemDType dtype = tag.equals("f32") ? MemDType.FLOAT32 : MemDType.BFLOAT16;
      Path dir = tmp.resolve(tag);
      try (LongLlama model = LongLlama.load(ckpt, ckpt.config().withMemDType(dtype), Device.cpu());
           CollectionWriter w = CollectionWriter.create(dir, ckpt.fingerprint(), ShardEncoder.layout(model.config()),
               dtype.pythonName(), "Flat")) {
        Manifest.ShardEntry e;
        try (ShardWriter shard = w.newShard("shard-00000")) {
          shard.append("book", new DocumentEncoder(model).encode(book));
          e = shard.finish();
        }
        w.commit(List.of(e));
      }
      try (MemoryCollection c = MemoryCollection.open(dir, ckpt.fingerprint(), true, false)) {
        assertEquals(128, c.manifest().rows());
      }
      for (int layer : new int[] {1, 2}) {
        Path out = tmp.resolve(tag + "-export-" + layer);
        try (MemoryCollection c = MemoryCollection.open(dir, null, true, true)) {
          io.longmem.memory.shard.CollectionExport.export(c, layer, out);
        }
        for (String kind : new String[] {"keys", "values"}) {
          Npy.Array got = Npy.read(out.resolve(kind + ".npy"));
          Npy.Array want = Npy.read(tiny.resolve(tag + "_book_mem_" + kind + "_layer" + layer + ".npy"));
          assertArrayEquals(want.shape(), got.shape());
          int flips = 0;
          for (int i = 0; i < got.data().length; i++) {
            double d = Math.abs(got.data()[i] - want.data()[i]);
            if (d > 1e-5) {
              flips++;
              // bfloat16: a value on the other side of a rounding midpoint (see ConformanceTest)
              assertTrue(tag.equals("bf16") && d <= Math.max(2e-3, Math.ulp(want.data()[i]) * 65536),
                  tag + " layer " + layer + " " + kind + "[" + i + "] differs by " + d);
            }
          }
          assertTrue(flips <= got.data().length / 100, flips + " elements beyond 1e-5");
        }
        assertEquals(127f, Npy.read(out.resolve("positions.npy")).data()[127]);
      }
    }
  }
}
