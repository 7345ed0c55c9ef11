package io.longmem.jobs.encode;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.io.Npy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.SparkSession;

/** Fixtures shared with model-worker's tests (the conformance checkpoint and tokenizers), and helpers. */
final class JobFixtures {
  private JobFixtures() {}

  static Path fixtures() {
    Path p = io.longmem.Fixtures.root().toAbsolutePath().normalize();
    if (!Files.isDirectory(p)) {
      throw new IllegalStateException("missing fixtures at " + p + " (tests run from the jobs module directory)");
    }
    return p;
  }

  static Path tinyA() {
    return fixtures().resolve("tiny-a");
  }

  static long[] bookIds() throws IOException {
    JsonArray a = JsonParser.parseString(Files.readString(tinyA().resolve("cases.json"))).getAsJsonObject()
        .getAsJsonArray("book_ids");
    long[] r = new long[a.size()];
    for (int i = 0; i < r.length; i++) {
      r[i] = a.get(i).getAsLong();
    }
    return r;
  }

  static SparkSession spark(int cores) {
    return SparkSession.builder().master("local[" + cores + "]").appName("longmem-test")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").getOrCreate();
  }

  static String jsonLine(String id, long[] ids) {
    JsonObject o = new JsonObject();
    o.addProperty("id", id);
    JsonArray a = new JsonArray();
    for (long t : ids) {
      a.add(t);
    }
    o.add("token_ids", a);
    return o.toString();
  }

  /** A document's memory in one layer as read back from a collection: [tokens][heads * head_dim] keys then values. */
  static float[][][] documentMemory(Path collection, String document, int layer) throws IOException {
    try (MemoryCollection c = MemoryCollection.open(collection, null, true, true)) {
      int heads = c.layout().heads();
      int dim = c.layout().headDim();
      for (MemoryCollection.Shard s : c.shards()) {
        for (Manifest.DocumentEntry d : s.documents()) {
          if (d.id().equals(document)) {
            int n = (int) (d.end() - d.begin());
            float[][] keys = new float[n][heads * dim];
            float[][] values = new float[n][heads * dim];
            for (int t = 0; t < n; t++) {
              for (int h = 0; h < heads; h++) {
                s.readKey(layer, d.begin() + t, h, keys[t], h * dim);
                s.readValue(layer, d.begin() + t, h, values[t], h * dim);
                if (s.position(d.begin() + t) != t) {
                  throw new AssertionError(document + " row " + t + " has position " + s.position(d.begin() + t));
                }
              }
            }
            return new float[][][] {keys, values};
          }
        }
      }
    }
    throw new AssertionError("document " + document + " is not in " + collection);
  }

  /** The reference memory of a layer, [heads, tokens, dim] as written by the reference, as [tokens][heads * dim]. */
  static float[][] reference(String file) throws IOException {
    Npy.Array a = Npy.read(tinyA().resolve(file));
    int heads = (int) a.shape()[0];
    int tokens = (int) a.shape()[1];
    int dim = (int) a.shape()[2];
    float[][] out = new float[tokens][heads * dim];
    for (int h = 0; h < heads; h++) {
      for (int t = 0; t < tokens; t++) {
        System.arraycopy(a.data(), (h * tokens + t) * dim, out[t], h * dim, dim);
      }
    }
    return out;
  }

  /** Every file under a directory, relative, sorted. */
  static List<String> files(Path dir) throws IOException {
    List<String> out = new ArrayList<>();
    try (var w = Files.walk(dir)) {
      w.filter(Files::isRegularFile).forEach(p -> out.add(dir.relativize(p).toString()));
    }
    out.sort(null);
    return out;
  }
}
