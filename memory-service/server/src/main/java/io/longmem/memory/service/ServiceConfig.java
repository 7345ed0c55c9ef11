package io.longmem.memory.service;

import io.longmem.io.InputException;
import com.google.gson.FieldNamingPolicy;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A memory node's settings: {@code conf/memory-service.json} holds the defaults; relative paths
 * in a file are resolved against the file's directory.
 */
public final class ServiceConfig {
  private static final Gson GSON = new GsonBuilder()
      .setFieldNamingPolicy(FieldNamingPolicy.LOWER_CASE_WITH_UNDERSCORES).create();

  /** Address to bind: loopback unless told otherwise. */
  public String bind = "127.0.0.1";
  /** Port; 0 picks a free one. */
  public int port = 7070;
  /** This node's id in the cluster file. */
  public String nodeId = "local";
  /** Collections by name: their directories (every node has every manifest). */
  public Map<String, String> collections = new LinkedHashMap<>();
  /** A cluster file (nodes, their shards, replication); null: this node serves everything alone. */
  public String cluster;
  public int maxK = 4096;
  public int maxMessageMb = 512;
  public int maxSessions = 1024;
  public long maxSessionTokens = 1L << 22;
  /** Threads searching shards in parallel; 0: one per core. */
  public int searchThreads;
  public boolean verifyChecksums = true;
  /**
   * Leave IVF inverted lists on disk (memory-mapped) for nodes whose indexes exceed RAM. Off by
   * default: FAISS's mapped lists cost about 5x per probed list (bench decode: 59 vs 12 ms for 64
   * searches of 1M-token shards at nprobe 16), and IVF-PQ codes are small; keys and values (the
   * bulk) are always memory-mapped.
   */
  public boolean mmapIndexes = false;
  /**
   * Read collections into memory when they load: keys, values and positions, or keys alone where
   * all would not fit. Re-scoring reads keys at random and answers read values and positions at
   * random; a page not yet in memory costs a fault per read, which a fresh node would pay for its
   * first thousands of searches. What would take the preloaded total past {@code preload_limit_mb}
   * is left on disk (with a warning).
   */
  public boolean preload = true;
  /**
   * How much a node preloads at most, in MiB; 0 means half the machine's RAM (the rest for the
   * JVM, the indexes and the OS). A node that serves nothing else can give it more.
   */
  public long preloadLimitMb = 0;
  /** If set, collections of another model are refused at load. */
  public String expectedFingerprint;
  /**
   * Approximate indexes: the node re-scores refine x k candidates per query exactly with the
   * stored keys (1: off, scores stay the index's estimates). A request may override it. 16 gave
   * recall@128 0.993 in bench memory (IVF1024,PQ25, 4 shards); 4 gave 0.78.
   */
  public int refine = 16;
  /** Deadline of a node-to-node call. */
  public long remoteDeadlineMs = 10_000;

  transient Path baseDir = Path.of(".");

  public static ServiceConfig load(Path file) throws IOException {
    try {
      ServiceConfig c = GSON.fromJson(Files.readString(file, StandardCharsets.UTF_8), ServiceConfig.class);
      if (c == null) {
        throw new InputException(file + " is empty");
      }
      c.baseDir = file.toAbsolutePath().getParent();
      c.validate(file.toString());
      return c;
    } catch (NoSuchFileException e) {
      throw new NoSuchFileException(file.toString(), null, "memory-service configuration not found");
    } catch (JsonParseException e) {
      throw new InputException(file + ": invalid JSON: " + e.getMessage());
    }
  }

  void validate(String where) {
    if (port < 0 || port > 65535) {
      throw new InputException(where + ": port " + port + " is outside 0..65535");
    }
    if (maxK < 1 || maxMessageMb < 1 || maxSessions < 0 || maxSessionTokens < 1 || searchThreads < 0 || refine < 1) {
      throw new InputException(where + ": max_k, max_message_mb, max_session_tokens must be positive, "
          + "max_sessions and search_threads >= 0");
    }
    if (preloadLimitMb < 0) {
      throw new InputException(where + ": preload_limit_mb must be >= 0 (0: half the RAM), got "
          + preloadLimitMb);
    }
    if (collections == null) {
      collections = new LinkedHashMap<>();
    }
  }

  Path resolve(String path) {
    return baseDir.resolve(path).normalize();
  }

  long maxMessageBytes() {
    return (long) maxMessageMb << 20;
  }

  /** The preload limit in bytes. */
  long preloadLimitBytes() {
    if (preloadLimitMb > 0) {
      return preloadLimitMb << 20;
    }
    return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
        .getOperatingSystemMXBean()).getTotalMemorySize() / 2;
  }

  int threads() {
    return searchThreads > 0 ? searchThreads : Runtime.getRuntime().availableProcessors();
  }
}
