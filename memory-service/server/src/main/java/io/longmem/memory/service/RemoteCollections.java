package io.longmem.memory.service;

import io.longmem.io.InputException;
import io.longmem.memory.fs.CollectionCache;
import io.longmem.memory.fs.HadoopConf;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/**
 * The node's collections given by Hadoop URI, copied into {@code cache_dir} before they are
 * mapped. Hadoop is loaded only when a URI is configured: a node without Hadoop's client on its
 * classpath serves local collections and refuses URIs with one line.
 */
final class RemoteCollections {
  private final ServiceConfig config;
  private Object cache; // a CollectionCache, made on first use (its class needs Hadoop)

  RemoteCollections(ServiceConfig config) {
    this.config = config;
  }

  /** The local, verified copy of collection {@code name} at {@code uri} ({@code shards}: this node's; null: all). */
  Path localize(String name, String uri, java.util.Set<String> shards) throws IOException {
    try {
      if (cache == null) {
        cache = new CollectionCache(config.cacheDirectory(), HadoopConf.of(Map.of()), config.verifyChecksums);
      }
      return ((CollectionCache) cache).localize(uri, shards).dir();
    } catch (NoClassDefFoundError e) {
      throw new InputException("collection " + name + " is a Hadoop URI (" + uri + "), and Hadoop's client is not "
          + "on this node's classpath (bin/longmem serve has it)");
    }
  }
}
