package io.longmem.memory.service;

import io.longmem.io.InputException;
import io.longmem.memory.security.NodeSecurity;
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
  /**
   * Collections by name: their directories, or Hadoop URIs ({@code hdfs://...}, {@code s3a://...};
   * every node has every manifest). A URI's collection is copied once into {@code cache_dir}.
   */
  public Map<String, String> collections = new LinkedHashMap<>();
  /** Where collections given by URI are copied (verified against their manifests) before mapping. */
  public String cacheDir = "~/.cache/longmem/collections";
  /** A cluster file (nodes, their shards, replication); null: this node serves everything alone. */
  public String cluster;
  public int maxK = 4096;
  public int maxMessageMb = 512;
  public int maxSessions = 1024;
  public long maxSessionTokens = 1L << 22;
  /*
   * Bounds of a request's numbers, checked before any work: every array the node allocates for a
   * search or a session is sized by them, and FAISS failures inside its OpenMP loops abort the
   * process rather than throw.
   */
  /** Most queries in one search. */
  public int maxQueries = 4096;
  /** Most heads of a search or a session (LongLLaMA 3B and 7B have 32). */
  public int maxHeads = 256;
  /** Largest head_dim of a search or a session. */
  public int maxHeadDim = 1024;
  /** Layer indexes lie in [0, max_layer_index]. */
  public int maxLayerIndex = 1023;
  /** Most layers of one session (each costs heads FAISS indexes). */
  public int maxSessionLayers = 64;
  /** Largest nprobe; IVF collections also refuse more than their nlist. */
  public int maxNprobe = 65536;
  /** Largest ef_search (HNSW allocates per query in proportion; 2^31-1 aborted the process). */
  public int maxEfSearch = 4096;
  /** Largest refine a request may ask; the pool (k x refine) is also capped at FAISS's largest k. */
  public int maxRefine = 64;
  /**
   * What the searches in flight may hold at once, in MiB: each is charged its answer's worst case
   * and its work arrays before it starts, and waits (up to {@code inflight_wait_ms}) or is refused
   * (RESOURCE_EXHAUSTED) when they are out. 0: a quarter of the JVM's heap.
   */
  public long maxInflightMb = 0;
  public long inflightWaitMs = 2000;
  /**
   * Most bytes one session may hold (keys, values, positions and its indexes), in MiB; 0: as much
   * as all sessions together (a worker reading a book holds one session per document, and the
   * 3B model's memory is 77 KB a token).
   */
  public long maxSessionMb = 0;
  /** Most bytes all sessions together may hold, in MiB; 0: half the JVM's heap. */
  public long maxSessionsTotalMb = 0;
  /** A session not used for this long is dropped (a background sweep); 0: never. */
  public long sessionIdleMs = 600_000;
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
  /** TLS of the node and of its calls to other nodes (files in PEM). */
  public Tls tls = new Tls();
  /** Bearer-token authentication. */
  public Auth auth = new Auth();

  /**
   * TLS: {@code cert_chain} and {@code private_key} (PKCS#8) make the node serve TLS only;
   * {@code client_ca} set: clients must present a certificate it signed (mutual TLS);
   * {@code peer_ca}: the CA this node trusts when it calls other nodes (then over TLS, presenting
   * its own certificate where it has one).
   */
  public static final class Tls {
    public String certChain;
    public String privateKey;
    public String clientCa;
    public String peerCa;
  }

  /**
   * {@code tokens_file}: the tokens the node accepts (JSON of names, roles and SHA-256s; unset:
   * authentication off, allowed on loopback only); {@code node_token_file}: the token this node
   * sends other nodes (needs the admin role there), else the environment's LONGMEM_NODE_TOKEN.
   */
  public static final class Auth {
    public String tokensFile;
    public String nodeTokenFile;
  }

  private transient NodeSecurity security;

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
    if (maxK > io.longmem.memory.faiss.FaissIndex.MAX_K || maxSessionTokens >= Integer.MAX_VALUE) {
      throw new InputException(where + ": max_k must be at most " + io.longmem.memory.faiss.FaissIndex.MAX_K
          + " and max_session_tokens below 2^31-1");
    }
    if (maxQueries < 1 || maxHeads < 1 || maxHeadDim < 1 || maxLayerIndex < 0 || maxSessionLayers < 1
        || maxNprobe < 1 || maxEfSearch < 1 || maxRefine < 1 || refine > maxRefine) {
      throw new InputException(where + ": max_queries, max_heads, max_head_dim, max_session_layers, max_nprobe, "
          + "max_ef_search and max_refine must be positive, max_layer_index >= 0, refine <= max_refine");
    }
    long mb = 1L << 40; // past this a size in bytes would overflow
    if (maxInflightMb > mb || maxSessionMb > mb || maxSessionsTotalMb > mb || preloadLimitMb > mb) {
      throw new InputException(where + ": a limit in MiB must be at most " + mb);
    }
    if (maxInflightMb < 0 || inflightWaitMs < 0 || maxSessionMb < 0 || maxSessionsTotalMb < 0 || sessionIdleMs < 0) {
      throw new InputException(where + ": max_session_mb, max_inflight_mb, inflight_wait_ms, "
          + "max_sessions_total_mb and session_idle_ms must be >= 0 (0: the default share of the heap, or no expiry)");
    }
    if (preloadLimitMb < 0) {
      throw new InputException(where + ": preload_limit_mb must be >= 0 (0: half the RAM), got "
          + preloadLimitMb);
    }
    if (collections == null) {
      collections = new LinkedHashMap<>();
    }
    if (tls == null) {
      tls = new Tls();
    }
    if (auth == null) {
      auth = new Auth();
    }
    if ((tls.certChain == null) != (tls.privateKey == null)) {
      throw new InputException(where + ": tls.cert_chain and tls.private_key go together");
    }
    if (tls.clientCa != null && tls.certChain == null) {
      throw new InputException(where + ": tls.client_ca (mutual TLS) needs tls.cert_chain and tls.private_key");
    }
    for (Map.Entry<String, String> e : collections.entrySet()) {
      if (e.getValue() == null || e.getValue().isBlank()) {
        throw new InputException(where + ": collection " + e.getKey() + " has no directory or URI");
      }
    }
    if (cacheDir == null || cacheDir.isBlank()) {
      throw new InputException(where + ": cache_dir must name a directory (where collections given by URI are copied)");
    }
  }

  /**
   * The node's TLS and tokens, their files read and checked once (a bad one: an {@link
   * InputException} naming its key and path).
   */
  public synchronized NodeSecurity security() {
    if (security == null) {
      validate("the configuration");
      security = NodeSecurity.of(new NodeSecurity.Sources(path(tls.certChain), path(tls.privateKey),
          path(tls.clientCa), path(tls.peerCa), path(auth.tokensFile), path(auth.nodeTokenFile),
          System.getenv(NodeSecurity.NODE_TOKEN_ENV)));
    }
    return security;
  }

  private Path path(String p) {
    return p == null || p.isEmpty() ? null : resolve(p);
  }

  Path resolve(String path) {
    return baseDir.resolve(path).normalize();
  }

  /** A collection's local directory: a path (relative to the file) or a {@code file:} URI. */
  Path localCollection(String location) {
    if (io.longmem.memory.fs.Locations.isFileUri(location)) {
      try {
        return Path.of(java.net.URI.create(location)).normalize();
      } catch (IllegalArgumentException e) {
        throw new InputException("collection " + location + " is not a valid file: URI (file:///absolute/path): "
            + e.getMessage());
      }
    }
    return resolve(location);
  }

  /** The cache directory: {@code ~} is the user's home, relative paths are the file's. */
  Path cacheDirectory() {
    String home = System.getProperty("user.home");
    String d = cacheDir.equals("~") ? home : cacheDir.startsWith("~/") ? home + cacheDir.substring(1) : cacheDir;
    return resolve(d);
  }

  long maxMessageBytes() {
    return (long) maxMessageMb << 20;
  }

  /** What searches in flight may hold, in bytes. */
  long inflightBytes() {
    return maxInflightMb > 0 ? maxInflightMb << 20 : Runtime.getRuntime().maxMemory() / 4;
  }

  /** What all sessions together may hold, in bytes. */
  long sessionsTotalBytes() {
    return maxSessionsTotalMb > 0 ? maxSessionsTotalMb << 20 : Runtime.getRuntime().maxMemory() / 2;
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
