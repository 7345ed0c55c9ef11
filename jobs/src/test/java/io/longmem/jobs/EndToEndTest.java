package io.longmem.jobs;

import io.longmem.memory.api.MemoryUnavailableException;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.google.gson.JsonParser;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.EncodeSpec;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.generate.GenerationOptions;
import io.longmem.model.generate.Generator;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import io.longmem.io.Npy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * encode -> shard -> index -> serve -> retrieve -> attend: the conformance book encoded by the
 * Spark job, served by a memory service on loopback (exact index), and the question read by the
 * worker with k >= the memory size reproduces the reference's logits and greedy ids, for float32
 * and bfloat16 memory. The book is never in the worker: it comes back from the service.
 */
class EndToEndTest {
  static final Path FIXTURES = io.longmem.Fixtures.dir("tiny-a")
      .toAbsolutePath().normalize();

  static long[] ids(String key) throws Exception {
    var a = JsonParser.parseString(Files.readString(FIXTURES.resolve("cases.json"))).getAsJsonObject().getAsJsonArray(key);
    long[] r = new long[a.size()];
    for (int i = 0; i < r.length; i++) {
      r[i] = a.get(i).getAsLong();
    }
    return r;
  }

  @Test
  void questionAgainstServedBookReproducesTheReference(@TempDir Path tmp) throws Exception {
    long[] book = ids("book_ids");
    long[] question = ids("question_ids");
    Path model = FIXTURES.resolve("model");
    Path input = tmp.resolve("book.jsonl");
    StringBuilder line = new StringBuilder("{\"id\": \"book\", \"token_ids\": [");
    for (int i = 0; i < book.length; i++) {
      line.append(i == 0 ? "" : ",").append(book[i]);
    }
    Files.writeString(input, line.append("]}\n"));
    SparkSession spark = SparkSession.builder().master("local[2]").config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1").getOrCreate();
    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    try {
      for (String tag : new String[] {"f32", "bf16"}) {
        String dtype = tag.equals("f32") ? "float32" : "bfloat16";
        EncodeJob.run(spark, new EncodeSpec(model.toString(), null, dtype, "Flat", 1024, 2, 4, 16384, 1,
            new Corpus.Spec(input.toString(), Corpus.Format.JSONL, "id", "text", "token_ids")), tmp.resolve(tag), false, 5);
        conf.collections.put("book-" + tag, tmp.resolve(tag).toString());
      }
    } finally {
      spark.stop();
    }
    Checkpoint ckpt = Checkpoint.open(model);
    try (MemoryServer server = MemoryServer.start(conf)) {
      String uri = "grpc://127.0.0.1:" + server.port();
      for (String tag : new String[] {"f32", "bf16"}) {
        MemDType dtype = tag.equals("f32") ? MemDType.FLOAT32 : MemDType.BFLOAT16;
        double maxTol = tag.equals("f32") ? 1e-4 : 2e-3;
        Npy.Array cached = Npy.read(FIXTURES.resolve(tag + "_prompt_logits_cached.npy"));
        try (LongLlama m = LongLlama.load(ckpt, ckpt.config().withMemDType(dtype), Device.cpu());
             MemoryEndpoint endpoint = MemoryEndpoint.remote(uri)) {
          ServiceMemory.Options opts = ServiceMemory.Options.topK(List.of("book-" + tag), 256);
          // the question's logits: the last 20 rows of the reference's prompt (book + question)
          try (ServiceMemory memory = new ServiceMemory(endpoint, opts, m.config(), ckpt.fingerprint(), 1);
               LongLlamaCache cache = m.newCache(1, memory); NDManager out = NDManager.newBaseManager()) {
            NDArray logits = m.forward(cache, new long[][] {question}, null, true, question.length,
                LongLlama.Output.ALL_LOGITS, out);
            float[] got = logits.toFloatArray();
            int vocab = cached.cols();
            int first = cached.rows() - question.length;
            double worst = 0;
            double sum = 0;
            for (int t = 0; t < question.length; t++) {
              for (int v = 0; v < vocab; v++) {
                double d = Math.abs(got[t * vocab + v] - cached.data()[(first + t) * vocab + v]);
                worst = Math.max(worst, d);
                sum += d;
              }
            }
            System.out.printf("end to end %s: question logits max abs error %.2e, mean %.2e%n", tag, worst,
                sum / (question.length * vocab));
            assertTrue(worst <= maxTol, tag + " question logits differ by " + worst);
            assertTrue(sum / (question.length * vocab) <= 1e-4, tag + " mean error " + sum / (question.length * vocab));
          }
          // greedy generation: the local cache overflows into the worker's session on the service
          var checks = JsonParser.parseString(Files.readString(FIXTURES.resolve("cases.json"))).getAsJsonObject()
              .getAsJsonObject("checks").getAsJsonObject(tag).getAsJsonArray("greedy_ids");
          long[] expected = new long[checks.size()];
          for (int i = 0; i < expected.length; i++) {
            expected[i] = checks.get(i).getAsLong();
          }
          try (ServiceMemory memory = new ServiceMemory(endpoint, opts, m.config(), ckpt.fingerprint(), 1);
               LongLlamaCache cache = m.newCache(1, memory)) {
            Generator.Result r = new Generator(m, null).generate(cache, question,
                GenerationOptions.greedy(expected.length, -1, question.length), false, null);
            assertArrayEquals(expected, r.ids(), tag + " greedy ids");
            assertTrue(memory.sessionTokens(1) > 0, "the local cache never overflowed into the session");
          }
        }
      }
    }
  }

  @Test
  void unreachableOrMismatchedMemoryFailsTheRequest(@TempDir Path tmp) throws Exception {
    Path model = FIXTURES.resolve("model");
    Checkpoint ckpt = Checkpoint.open(model);
    int port;
    try (var socket = new java.net.ServerSocket(0)) {
      port = socket.getLocalPort(); // nobody listens there once closed
    }
    try (LongLlama m = LongLlama.load(ckpt, Device.cpu());
         MemoryEndpoint endpoint = MemoryEndpoint.remote("grpc://127.0.0.1:" + port)) {
      var opts = new ServiceMemory.Options(List.of("books"), List.of(), 16, 0, 0, 500, 2);
      var e = assertThrows(MemoryUnavailableException.class,
          () -> new ServiceMemory(endpoint, opts, m.config(), ckpt.fingerprint(), 1));
      assertTrue(e.getMessage().contains("did not answer") && e.getMessage().contains("2 attempt"), e.getMessage());
      // session-only memory: the failure comes with the first window that reaches memory
      var sessionOnly = new ServiceMemory.Options(List.of(), List.of(), 16, 0, 0, 500, 2);
      try (ServiceMemory memory = new ServiceMemory(endpoint, sessionOnly, m.config(), ckpt.fingerprint(), 1);
           LongLlamaCache cache = m.newCache(1, memory)) {
        long[] ids = ids("book_ids");
        assertThrows(MemoryUnavailableException.class, () -> m.forward(cache, new long[][] {ids}, null,
            false, 0, LongLlama.Output.MEMORY_ONLY, null));
      }
    }
    // a collection of another model is refused by name
    Path other = tmp.resolve("other");
    io.longmem.model.checkpoint.RandomCheckpoint.write(other,
        new io.longmem.model.checkpoint.RandomCheckpoint.Shape(512, 64, 4, 128, 4, 32, 20, new int[] {1, 2}), 5);
    Checkpoint otherCkpt = Checkpoint.open(other);
    Path coll = tmp.resolve("coll");
    try (LongLlama m = LongLlama.load(otherCkpt, Device.cpu());
         var w = io.longmem.memory.shard.CollectionWriter.create(coll, otherCkpt.fingerprint(),
             io.longmem.jobs.encode.ShardEncoder.layout(m.config()), "bfloat16", "Flat")) {
      io.longmem.memory.shard.Manifest.ShardEntry e;
      try (var shard = w.newShard("s0")) {
        shard.append("doc", new io.longmem.encode.DocumentEncoder(m).encode(new long[] {1, 2, 3, 4}));
        e = shard.finish();
      }
      w.commit(List.of(e));
    }
    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    conf.collections.put("other", coll.toString());
    try (MemoryServer server = MemoryServer.start(conf);
         LongLlama m = LongLlama.load(ckpt, Device.cpu());
         MemoryEndpoint endpoint = MemoryEndpoint.remote("grpc://127.0.0.1:" + server.port())) {
      var e = assertThrows(IllegalArgumentException.class, () -> new ServiceMemory(endpoint,
          ServiceMemory.Options.topK(List.of("other"), 16), m.config(), ckpt.fingerprint(), 1));
      assertTrue(e.getMessage().contains("another model"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new ServiceMemory(endpoint,
          ServiceMemory.Options.topK(List.of("missing"), 16), m.config(), ckpt.fingerprint(), 1));
      assertTrue(e.getMessage().contains("no collection 'missing'"), e.getMessage());
    }
  }
}
