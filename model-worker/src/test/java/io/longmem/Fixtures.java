package io.longmem;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The conformance fixtures copied from ../shared into test resources, for this module's tests and,
 * through its test jar, for the other modules' tests: from a directory of the build, or unpacked
 * once from the jar into a temporary directory.
 */
public final class Fixtures {
  private static Path unpacked;

  private Fixtures() {}

  /** The fixtures' root directory (tiny-a/, tokenizers/). */
  public static synchronized Path root() {
    URL url = Fixtures.class.getResource("/fixtures");
    if (url == null) {
      throw new IllegalStateException("no test fixtures on the classpath (model-worker's test resources)");
    }
    try {
      if ("file".equals(url.getProtocol())) {
        return Path.of(url.toURI());
      }
      if (unpacked == null) {
        Path tmp = Files.createTempDirectory("longmem-fixtures");
        try (FileSystem jar = FileSystems.newFileSystem(url.toURI(), Map.of())) {
          Path src = jar.getPath("/fixtures");
          try (Stream<Path> all = Files.walk(src)) {
            for (Path p : all.toList()) {
              Path dst = tmp.resolve(src.relativize(p).toString());
              if (Files.isDirectory(p)) {
                Files.createDirectories(dst);
              } else {
                Files.copy(p, dst);
              }
            }
          }
        }
        unpacked = tmp;
      }
      return unpacked;
    } catch (IOException | URISyntaxException e) {
      throw new IllegalStateException("cannot read the test fixtures at " + url + ": " + e.getMessage(), e);
    }
  }

  public static Path dir(String name) {
    Path p = root().resolve(name);
    if (!Files.exists(p)) {
      throw new IllegalStateException("missing test fixture " + name);
    }
    return p;
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

}
