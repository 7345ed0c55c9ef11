package io.longmem.memory.service;

import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardLayout;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One memory node: the collections (or the shards of them the cluster file gives it), the
 * sessions, and the search that fans out over shards, sessions and other nodes and merges their
 * exact top-k. The gRPC service is a thin layer over this class.
 */
public final class MemoryNode implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryNode.class);

  private final ServiceConfig config;
  private final ClusterConfig cluster;
  private final Map<String, MemoryCollection> collections = new LinkedHashMap<>();
  private final Map<String, String> refused = new LinkedHashMap<>();
  private final ConcurrentHashMap<String, Session> sessions = new ConcurrentHashMap<>();
  private final ExecutorService pool;
  private final RemoteNodes remote;

  public MemoryNode(ServiceConfig config) throws IOException {
    this.config = config;
    this.cluster = config.cluster == null ? null : ClusterConfig.load(config.resolve(config.cluster));
    if (cluster != null && cluster.node(config.nodeId) == null) {
      throw new IllegalArgumentException("node_id " + config.nodeId + " is not in the cluster file " + config.cluster);
    }
    this.pool = Executors.newFixedThreadPool(config.threads(), r -> {
      // The pool already searches shards and heads in parallel: FAISS runs single-threaded in
      // these threads (its OpenMP teams would only contend with them and spin on idle cores).
      Thread t = new Thread(() -> {
        FaissIndex.setThreads(1);
        r.run();
      }, "memory-search");
      t.setDaemon(true);
      return t;
    });
    this.remote = new RemoteNodes(config);
    long preloaded = 0;
    long budget = config.preloadLimitBytes();
    for (Map.Entry<String, String> e : config.collections.entrySet()) {
      Path dir = config.resolve(e.getValue());
      Set<String> mine = null;
      if (cluster != null) {
        mine = new HashSet<>(cluster.node(config.nodeId).shards.getOrDefault(e.getKey(), List.of()));
      }
      long t0 = System.nanoTime();
      try {
        Manifest m = Manifest.read(dir);
        MemoryCollection.Preload preload = MemoryCollection.Preload.NONE;
        if (config.preload) {
          long keys = storedBytes(m, mine);
          long all = 2 * keys + rows(m, mine) * 4; // values as large as keys; int32 positions
          if (preloaded + all <= budget) {
            preload = MemoryCollection.Preload.ALL;
            preloaded += all;
          } else if (preloaded + keys <= budget) {
            preload = MemoryCollection.Preload.KEYS;
            preloaded += keys;
            LOG.warn("collection {}: only its keys ({} MiB) are read into memory at load: with its values they "
                + "would take this node past its preload limit ({} MiB, preload_limit_mb)", e.getKey(), keys >> 20, budget >> 20);
          } else {
            LOG.warn("collection {}: its keys ({} MiB) would take this node past its preload limit "
                + "({} MiB, preload_limit_mb): they stay on disk until read", e.getKey(), keys >> 20, budget >> 20);
          }
        }
        MemoryCollection c = MemoryCollection.open(dir, m, config.expectedFingerprint, new MemoryCollection.Loading(
            config.verifyChecksums, config.mmapIndexes, preload, mine));
        collections.put(e.getKey(), c);
        LOG.info("collection {}: {} tokens in {} shards ({} loaded here) from {} in {} ms", e.getKey(),
            c.manifest().rows(), c.manifest().shards().size(), c.shards().size(), dir,
            (System.nanoTime() - t0) / 1_000_000);
      } catch (IOException | RuntimeException ex) {
        // a damaged collection is refused with its path; the node serves the others
        refused.put(e.getKey(), ex.getMessage());
        LOG.error("collection {} refused: {}", e.getKey(), ex.getMessage());
      }
    }
  }

  /** The rows of a collection this node loads (its shards, or those of {@code mine}), over every layer. */
  private static long rows(Manifest m, Set<String> mine) {
    long rows = 0;
    for (Manifest.ShardEntry s : m.shards()) {
      if (mine == null || mine.contains(s.id())) {
        rows += s.rows();
      }
    }
    return rows * m.layout().layers().size();
  }

  /** The bytes of the keys of those rows (values take as many). */
  private static long storedBytes(Manifest m, Set<String> mine) {
    ShardLayout l = m.layout();
    return rows(m, mine) * l.width() * l.storage().bytes();
  }

  public Map<String, MemoryCollection> collections() {
    return java.util.Collections.unmodifiableMap(collections);
  }

  /** Collections that could not be loaded, with why. */
  public Map<String, String> refused() {
    return java.util.Collections.unmodifiableMap(refused);
  }

  // ---------------------------------------------------------------------------------------------
  // Search

  /** The exact merge of the top-k of every shard and session the query names. */
  public Hits search(SearchQuery q) {
    q.validate(config.maxK, config.maxMessageBytes());
    Map<String, Map<String, long[]>> plan = plan(q);
    List<ShardTask> tasks = new ArrayList<>();
    Map<String, List<String>> remoteShards = new LinkedHashMap<>();
    for (Map.Entry<String, Map<String, long[]>> c : plan.entrySet()) {
      MemoryCollection col = collections.get(c.getKey());
      for (Map.Entry<String, long[]> s : c.getValue().entrySet()) {
        MemoryCollection.Shard shard = col.shard(s.getKey());
        if (shard != null) {
          tasks.add(new ShardTask(shard, col.layout(), s.getValue()));
        } else {
          remoteShards.computeIfAbsent(c.getKey(), x -> new ArrayList<>()).add(s.getKey());
        }
      }
    }
    List<Session> sessions = new ArrayList<>();
    for (String name : q.sessions()) {
      Session s = session(name);
      checkSession(s, q);
      sessions.add(s);
    }
    List<Hits> parts = new ArrayList<>();
    List<String> missing = new ArrayList<>();
    for (Map.Entry<String, List<String>> e : remoteShards.entrySet()) {
      parts.addAll(remote.search(cluster, config.nodeId, e.getKey(), e.getValue(), q, missing));
    }
    if (!missing.isEmpty()) {
      throw new RequestException(RequestException.Kind.UNAVAILABLE, "no live replica for shards " + missing
          + ": refusing to answer from part of the memory");
    }
    parts.add(searchLocal(tasks, sessions, q));
    Hits merged = parts.size() == 1 ? parts.get(0) : Hits.merge(parts, q.heads(), q.queries(), q.k(), q.headDim());
    SearchQuery.checkSize(merged, config.maxMessageBytes());
    return merged;
  }

  /** A local shard to search, with its row ranges (null: all rows). */
  private record ShardTask(MemoryCollection.Shard shard, ShardLayout layout, long[] ranges) {}

  /**
   * The exact top-k of this node's shards and sessions. Where an index is approximate, the node
   * keeps a pool of refine x k candidates per query: each shard proposes its best by estimated
   * score (a share of the pool, at least k, four times its even share), the proposals are merged,
   * and only the pool is re-scored with the stored keys: the keys read per query do not grow with
   * the number of shards.
   */
  private Hits searchLocal(List<ShardTask> tasks, List<Session> sessions, SearchQuery q) {
    int refine = refine(q);
    boolean approximate = refine > 1 && tasks.stream().anyMatch(t -> !t.shard().index(q.layer(), 0).isExact());
    Candidates pooled = null;
    List<Future<?>> heads = new ArrayList<>();
    List<Future<Hits>> local = new ArrayList<>();
    if (approximate) {
      int candidates = (int) Math.min((long) q.k() * refine, FaissIndex.MAX_K);
      int perShard = proposals(q.k(), candidates, tasks.size());
      // one task per head: its FAISS searches over every shard, then its re-scoring, so neither
      // phase waits for the other heads and the whole search spreads over the pool
      Candidates c = new Candidates(tasks.stream().map(ShardTask::shard).toList(), q, candidates);
      for (int h = 0; h < q.heads(); h++) {
        int head = h;
        heads.add(pool.submit(() -> c.rescoreHead(head, propose(tasks, q, head, perShard))));
      }
      pooled = c;
    } else {
      for (ShardTask t : tasks) {
        local.add(pool.submit(() -> searchShard(t.shard(), t.layout(), q, t.ranges())));
      }
    }
    for (Session s : sessions) {
      local.add(pool.submit(() -> s.search(q))); // exact already
    }
    List<Hits> parts = new ArrayList<>();
    if (pooled != null) {
      for (Future<?> f : heads) {
        await(f);
      }
      if (sessions.isEmpty()) {
        return pooled.hits();
      }
      parts.add(pooled.hits());
    }
    for (Future<Hits> f : local) {
      parts.add(await(f));
    }
    return Hits.merge(parts, q.heads(), q.queries(), q.k(), q.headDim());
  }

  /**
   * How many candidates each shard proposes for a pool of {@code candidates}: at least k, four
   * times its even share (a shard holding more of the best pays for it only in recall, not in
   * wrong answers), never more than the pool.
   */
  public static int proposals(int k, int candidates, int shards) {
    return (int) Math.min(candidates, Math.max(k, 4L * ((candidates + shards - 1) / Math.max(1, shards))));
  }

  /** Head h's candidates in every shard by the index's estimated scores: raw ids and scores, no pairs yet. */
  private static FaissIndex.Result[] propose(List<ShardTask> tasks, SearchQuery q, int h, int k) {
    FaissIndex.Result[] out = new FaissIndex.Result[tasks.size()];
    for (int s = 0; s < out.length; s++) {
      ShardTask t = tasks.get(s);
      FaissIndex.SearchParams params = new FaissIndex.SearchParams(q.nprobe(), q.efSearch(), t.ranges());
      int kk = (int) Math.min(k, Math.max(1, t.shard().rows()));
      out[s] = t.shard().index(q.layer(), h).search(q.head(h), kk, params);
    }
    return out;
  }

  /** The top-k over some of this node's shards of one collection (a coordinator asked). */
  public Hits searchShards(String collection, List<String> shards, SearchQuery q) {
    q.validate(config.maxK, config.maxMessageBytes());
    MemoryCollection col = collection(collection);
    checkLayout(collection, col.layout(), q);
    Map<String, long[]> ranges = plan(q).getOrDefault(collection, Map.of());
    List<ShardTask> tasks = new ArrayList<>();
    for (String id : shards) {
      MemoryCollection.Shard shard = col.shard(id);
      if (shard == null) {
        throw new RequestException(RequestException.Kind.UNAVAILABLE, "node " + config.nodeId + " does not serve "
            + collection + "/" + id);
      }
      if (!q.documents().isEmpty() && !ranges.containsKey(id)) {
        continue;
      }
      tasks.add(new ShardTask(shard, col.layout(), ranges.get(id)));
    }
    Hits merged = searchLocal(tasks, List.of(), q);
    SearchQuery.checkSize(merged, config.maxMessageBytes());
    return merged;
  }

  /**
   * Which shards of which collections to search, with each shard's row ranges when documents are
   * named (null: the whole shard). Checks collections, layer, shapes and documents.
   */
  private Map<String, Map<String, long[]>> plan(SearchQuery q) {
    Map<String, Map<String, long[]>> plan = new LinkedHashMap<>();
    Set<String> wanted = new HashSet<>(q.documents());
    Set<String> found = new HashSet<>();
    for (String name : q.collections()) {
      MemoryCollection col = collection(name);
      checkLayout(name, col.layout(), q);
      Map<String, long[]> shards = new LinkedHashMap<>();
      for (Manifest.ShardEntry s : col.manifest().shards()) {
        if (wanted.isEmpty()) {
          shards.put(s.id(), null);
          continue;
        }
        List<Long> bounds = new ArrayList<>();
        for (Manifest.DocumentEntry d : s.documents()) {
          if (wanted.contains(d.id())) {
            found.add(d.id());
            bounds.add(d.begin());
            bounds.add(d.end());
          }
        }
        if (!bounds.isEmpty()) {
          shards.put(s.id(), bounds.stream().mapToLong(Long::longValue).toArray());
        }
      }
      plan.put(name, shards);
    }
    if (!wanted.isEmpty()) {
      wanted.removeAll(found);
      if (!wanted.isEmpty() && !q.collections().isEmpty()) {
        throw RequestException.notFound("documents " + new java.util.TreeSet<>(wanted) + " are in none of the collections "
            + q.collections());
      }
    }
    return plan;
  }

  private MemoryCollection collection(String name) {
    MemoryCollection c = collections.get(name);
    if (c == null) {
      String why = refused.get(name);
      if (why != null) {
        throw new RequestException(RequestException.Kind.FAILED_PRECONDITION, "collection " + name
            + " was refused at load: " + why);
      }
      throw RequestException.notFound("unknown collection " + name + " (served: " + collections.keySet() + ")");
    }
    return c;
  }

  private static void checkLayout(String name, ShardLayout layout, SearchQuery q) {
    if (!layout.layers().contains(q.layer())) {
      throw RequestException.invalid("layer " + q.layer() + " is not a memory layer of collection " + name
          + " (layers " + layout.layers() + ")");
    }
    if (q.heads() != layout.heads()) {
      throw RequestException.invalid("heads: " + q.heads() + ", collection " + name + " has " + layout.heads());
    }
    if (q.headDim() != layout.headDim()) {
      throw RequestException.invalid("head_dim: " + q.headDim() + ", collection " + name + " has " + layout.headDim());
    }
  }

  private static void checkSession(Session s, SearchQuery q) {
    if (!s.hasLayer(q.layer())) {
      throw RequestException.invalid("layer " + q.layer() + " is not a layer of session " + s.id());
    }
    if (q.heads() != s.heads() || q.headDim() != s.headDim()) {
      throw RequestException.invalid("heads/head_dim: " + q.heads() + "/" + q.headDim() + ", session " + s.id()
          + " has " + s.heads() + "/" + s.headDim());
    }
  }

  private int refine(SearchQuery q) {
    return q.refine() > 0 ? q.refine() : config.refine;
  }

  /**
   * Top-k of one shard for every head and query, by the index's scores (exact for Flat, estimated
   * for IVF-PQ: {@link #searchLocal} re-scores); the pairs are read later, winners only.
   */
  static Hits searchShard(MemoryCollection.Shard shard, ShardLayout layout, SearchQuery q, long[] ranges) {
    int heads = layout.heads();
    int layer = q.layer();
    Hits out = new Hits(q.heads(), q.queries(), q.k(), layout.headDim());
    int source = out.addSource(payload(shard, layer));
    Map<String, Integer> docs = new HashMap<>();
    int[] docSlot = new int[shard.documents().size()]; // the shard's document index -> out's, -1 until used
    Arrays.fill(docSlot, -1);
    FaissIndex.SearchParams params = new FaissIndex.SearchParams(q.nprobe(), q.efSearch(), ranges);
    int k = (int) Math.min(q.k(), Math.min(FaissIndex.MAX_K, Math.max(1, shard.rows())));
    RowSlots slotOfRow = new RowSlots(q.queries() * k); // rows chosen in this head -> their pair slot
    for (int h = 0; h < heads; h++) {
      FaissIndex.Result r = shard.index(layer, h).search(q.head(h), k, params);
      Hits.Head head = out.perHead[h];
      for (int i = 0; i < q.queries(); i++) {
        for (int j = 0; j < k; j++) {
          long row = r.id(i, j);
          if (row < 0) {
            continue;
          }
          int slot = slotOfRow.get(row);
          if (slot < 0) {
            int d = shard.documentIndexOf(row);
            if (docSlot[d] < 0) {
              docSlot[d] = out.document(shard.documents().get(d).id(), docs);
            }
            slot = head.addPair(source, row, docSlot[d], Hits.LATER); // read if it wins
            slotOfRow.put(row, slot);
          }
          head.scores[i * q.k() + j] = r.score(i, j);
          head.slots[i * q.k() + j] = slot;
        }
      }
      slotOfRow.clear();
    }
    return out;
  }

  /** Where a shard's pairs are read: keys and values of a layer, positions for the winners. */
  static Hits.Payload payload(MemoryCollection.Shard shard, int layer) {
    return new Hits.Payload() {
      @Override
      public void read(long row, int head, float[] key, float[] value, int off) {
        shard.readKey(layer, row, head, key, off);
        shard.readValue(layer, row, head, value, off);
      }

      @Override
      public boolean addressable(boolean float16) {
        return shard.isFloat16() == float16;
      }

      @Override
      public long address(long row, int head, boolean key) {
        return shard.address(layer, row, head, key);
      }

      @Override
      public long positionAddress(long row) {
        return shard.positionAddress(row);
      }

      @Override
      public int position(long row) {
        return shard.position(row);
      }
    };
  }

  /**
   * Row -> slot for the rows one head's answer holds: an open-addressing table sized by the
   * answer (queries x k), not by the shard, so a search costs the same on a shard of any size.
   */
  static final class RowSlots {
    private final long[] rows;
    private final int[] slots;
    private final int mask;
    private final int[] used;
    private int count;

    RowSlots(int capacity) {
      int size = Integer.highestOneBit(Math.max(4, capacity) * 2 - 1) << 1;
      rows = new long[size];
      slots = new int[size];
      used = new int[Math.max(4, capacity)];
      mask = size - 1;
      Arrays.fill(rows, -1);
    }

    private int find(long row) {
      int i = (int) (row * 0x9E3779B97F4A7C15L >>> 40) & mask;
      while (rows[i] != -1 && rows[i] != row) {
        i = (i + 1) & mask;
      }
      return i;
    }

    int get(long row) {
      int i = find(row);
      return rows[i] == row ? slots[i] : -1;
    }

    void put(long row, int slot) {
      int i = find(row);
      if (rows[i] != row) {
        rows[i] = row;
        used[count++] = i;
      }
      slots[i] = slot;
    }

    void clear() {
      for (int j = 0; j < count; j++) {
        rows[used[j]] = -1;
      }
      count = 0;
    }
  }

  private static <T> T await(Future<T> f) {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new RequestException(RequestException.Kind.UNAVAILABLE, "interrupted");
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException(e.getCause());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Sessions

  public String createSession(List<Integer> layers, int heads, int headDim) {
    if (layers.isEmpty() || heads <= 0 || headDim <= 0) {
      throw RequestException.invalid("a session needs layers, and positive heads and head_dim");
    }
    if (sessions.size() >= config.maxSessions) {
      throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "this node holds " + sessions.size()
          + " sessions, its limit; drop some first");
    }
    String id = "session-" + UUID.randomUUID();
    sessions.put(id, new Session(id, layers, heads, headDim, config.maxSessionTokens));
    return id;
  }

  /** keys/values [heads, n, head_dim]. */
  public long appendSession(String id, int layer, int n, float[] keys, float[] values, int[] positions) {
    Session s = session(id);
    if (n <= 0) {
      throw RequestException.invalid("tokens must be positive, got " + n);
    }
    long expected = (long) s.heads() * n * s.headDim();
    if (keys.length != expected || values.length != expected) {
      throw RequestException.invalid("keys/values: " + keys.length + "/" + values.length + " floats, heads x tokens x "
          + "head_dim = " + expected);
    }
    if (positions != null && positions.length != 0 && positions.length != n) {
      throw RequestException.invalid("positions: " + positions.length + " for " + n + " tokens");
    }
    for (float[] a : new float[][] {keys, values}) {
      for (int i = 0; i < a.length; i++) {
        if (!Float.isFinite(a[i])) {
          throw RequestException.invalid((a == keys ? "keys" : "values") + ": element " + i + " is " + a[i]);
        }
      }
    }
    return s.append(layer, n, keys, values, positions == null || positions.length == 0 ? null : positions);
  }

  public void dropSession(String id) {
    Session s = sessions.remove(id);
    if (s == null) {
      throw RequestException.notFound("unknown session " + id);
    }
    s.close();
  }

  private Session session(String id) {
    Session s = sessions.get(id);
    if (s == null) {
      throw RequestException.notFound("unknown session " + id);
    }
    return s;
  }

  @Override
  public void close() {
    pool.shutdownNow();
    remote.close();
    sessions.values().forEach(Session::close);
    sessions.clear();
    collections.values().forEach(MemoryCollection::close);
  }
}
