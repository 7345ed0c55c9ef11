package io.longmem.jobs.summarize;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.EncodeSpec;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.summarize.BookSummarizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The corpus summarization job on local[2]: books read in tasks, or already encoded and served. */
class SummarizeJobTest {
  @Test
  void summarizesEveryDocument(@TempDir Path tmp) throws Exception {
    Path model = tmp.resolve("model");
    RandomCheckpoint.write(model, new RandomCheckpoint.Shape(32000, 64, 4, 128, 3, 32, 16, new int[] {1}), 3);
    Path fixtures = io.longmem.Fixtures.root().toAbsolutePath().normalize();
    Files.copy(fixtures.resolve("tokenizers/openllama_v2.model"), model.resolve("tokenizer.model"));
    Path corpus = Path.of("..", "conf", "samples", "corpus").toAbsolutePath().normalize();
    SparkSession spark = SparkSession.builder().master("local[2]").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    try {
      var settings = new SummarizeJob.Settings(model.toString(), null, "dense", null, 64,
          BookSummarizer.DEFAULT_INSTRUCTION, 6);
      Corpus.Spec in = new Corpus.Spec(corpus.toString(), Corpus.Format.TEXT, "id", "text", "token_ids");
      Path out = tmp.resolve("summaries");
      assertEquals(3, SummarizeJob.run(spark, settings, in, out, "jsonl", 2));
      Map<String, Row> rows = new HashMap<>();
      for (Row r : spark.read().json(out.toString()).collectAsList()) {
        rows.put(r.getAs("id"), r);
      }
      assertEquals(java.util.Set.of("lighthouse.txt", "orchard.txt", "clockmaker.txt"), rows.keySet());
      // the job's summary is what the summarizer gives in a plain process
      Checkpoint ckpt = Checkpoint.open(model);
      SentencePieceTokenizer tok = SentencePieceTokenizer.load(model.resolve("tokenizer.model"));
      String text = Files.readString(corpus.resolve("orchard.txt"));
      try (LongLlama m = LongLlama.load(ckpt, Device.cpu())) {
        BookSummarizer.Result want = new BookSummarizer(m, tok).summarize(text, BookSummarizer.DEFAULT_INSTRUCTION,
            new DenseMemory(m.manager()), GenerationOptions.greedy(6, m.config().eosTokenId(),
                m.config().lastContextLength()), null);
        Row got = rows.get("orchard.txt");
        assertEquals(want.summary(), got.getAs("summary"));
        assertEquals((long) tok.encodeWithBos(text).length, (long) got.<Long>getAs("tokens"));
      }
      var e = assertThrows(IllegalArgumentException.class, () -> SummarizeJob.run(spark, settings, in, out, "jsonl", 2));
      assertTrue(e.getMessage().contains("already exists"), e.getMessage());

      // books already encoded: summarized against the memory service, every document of the collection
      Path coll = tmp.resolve("collection");
      EncodeJob.run(spark, new EncodeSpec(model.toString(), null, null, "Flat", 1024, 2, 4, 16384, 1, in), coll, false, 5);
      ServiceConfig conf = new ServiceConfig();
      conf.port = 0;
      conf.collections.put("books", coll.toString());
      try (MemoryServer server = MemoryServer.start(conf)) {
        var served = new SummarizeJob.Settings(model.toString(), null, "grpc://127.0.0.1:" + server.port(), "books", 64,
            BookSummarizer.DEFAULT_INSTRUCTION, 4);
        Path out2 = tmp.resolve("summaries-served");
        assertEquals(3, SummarizeJob.run(spark, served, null, out2, "parquet", 2));
        List<Row> got = spark.read().parquet(out2.toString()).collectAsList();
        assertEquals(3, got.size());
        for (Row r : got) {
          assertEquals(0L, (long) r.<Long>getAs("tokens"), "an encoded book is not read again");
          assertTrue(r.<Long>getAs("generated") >= 1);
        }
      }
    } finally {
      spark.stop();
    }
  }
}
