package io.longmem.memory.fs;

import io.longmem.io.InputException;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;

/**
 * Hadoop filesystem settings and URIs ({@link Locations} tells a URI from a local path). The settings travel to Spark executors as a plain map (the driver's Hadoop
 * configuration, e.g. Spark's {@code spark.hadoop.*}), since {@link Configuration} is not
 * serializable.
 */
public final class HadoopConf {
  private HadoopConf() {}

  /** A location as a URI, or a clear error naming it. */
  public static URI uri(String location, String what) {
    try {
      URI u = new URI(location);
      if (u.getScheme() == null || u.getPath() == null || u.getPath().isEmpty()) {
        throw new InputException(what + " " + location + " is not a filesystem URI (scheme://authority/path)");
      }
      return u.normalize();
    } catch (URISyntaxException e) {
      throw new InputException(what + " " + location + " is not a valid URI: " + e.getReason());
    }
  }

  /** A configuration from Hadoop's defaults (core-site.xml etc. on the classpath) plus these settings. */
  public static Configuration of(Map<String, String> settings) {
    Configuration c = new Configuration();
    settings.forEach(c::set);
    return c;
  }

  /** Every setting of a configuration, to rebuild it elsewhere with {@link #of}. */
  public static Map<String, String> snapshot(Configuration c) {
    Map<String, String> m = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : c) {
      m.put(e.getKey(), e.getValue());
    }
    return m;
  }

  /** The filesystem of a URI; a scheme without a filesystem is the user's error. */
  public static FileSystem fileSystem(URI uri, Configuration conf, String what) throws IOException {
    try {
      return FileSystem.get(uri, conf);
    } catch (org.apache.hadoop.fs.UnsupportedFileSystemException e) {
      throw new InputException(what + " " + uri + ": no Hadoop filesystem for scheme '" + uri.getScheme()
          + "' on the classpath (" + e.getMessage() + ")");
    }
  }
}
