package io.longmem;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The conformance fixtures copied from ../shared into test resources. */
public final class Fixtures {
  private Fixtures() {}

  public static Path dir(String name) {
    try {
      return Path.of(Fixtures.class.getResource("/fixtures/" + name).toURI());
    } catch (URISyntaxException | NullPointerException e) {
      throw new IllegalStateException("missing test fixture " + name, e);
    }
  }

  public static Path tinyA() {
    return dir("tiny-a");
  }

  public static JsonObject json(Path file) throws IOException {
    return JsonParser.parseString(Files.readString(file)).getAsJsonObject();
  }

  public static long[] ids(JsonObject o, String key) {
    var a = o.getAsJsonArray(key);
    long[] r = new long[a.size()];
    for (int i = 0; i < r.length; i++) {
      r[i] = a.get(i).getAsLong();
    }
    return r;
  }

  public static long[] concat(long[] a, long[] b) {
    long[] r = new long[a.length + b.length];
    System.arraycopy(a, 0, r, 0, a.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }

  /** The shard layout of a model's memory (as jobs' ShardEncoder writes it). */
  public static io.longmem.memory.shard.ShardLayout layout(io.longmem.model.checkpoint.LongLlamaConfig c) {
    return new io.longmem.memory.shard.ShardLayout(c.memLayers(), c.numHeads(), c.headDim(), c.memDType().storage());
  }
}
