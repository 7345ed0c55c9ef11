package io.longmem.memory.service;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.security.Caller;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One memory node: the collections (or the shards of them the cluster file gives it), the
 * sessions, and the coordinator of searches. A search is planned ({@link SearchPlan}: every check
 * before any work), fanned out at once to its {@link MemorySource}s (this node's shards, each
 * session, the shards other nodes hold) and their answers merged. The gRPC service is a thin layer
 * over this class.
 *
 * <p>All work runs on the node's own pool: searches, the decoding of other nodes' answers and the
 * writing of answers ({@link #write}). FAISS runs single-threaded in its threads: the pool already
 * searches shards and heads in parallel, and OpenMP teams would only contend with it.
 */
public final class MemoryNode implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryNode.class);

  private final ServiceConfig config;
  private final ClusterConfig cluster;
  private final Map<String, MemoryCollection> collections = new LinkedHashMap<>();
  private final Map<String, String> refused = new LinkedHashMap<>();
  /** why each refused collection was refused, as clients are told it: without server paths */
  private final Map<String, String> refusedShown = new LinkedHashMap<>();
  private final RequestLimits limits;
  /** what the searches in flight hold, worst case (see {@link SearchCost}) */
  private final ByteBudget inflight;
  private final Sessions sessions;
  private final ExecutorService pool;
  private final RemoteNodes remote;

  public MemoryNode(ServiceConfig config) throws IOException {
    config.validate("memory-service configuration");
    this.config = config;
    this.limits = RequestLimits.of(config);
    this.inflight = new ByteBudget("searches in flight", config.inflightBytes());
    this.cluster = config.cluster == null ? null : ClusterConfig.load(config.resolve(config.cluster));
    if (cluster != null && cluster.node(config.nodeId) == null) {
      throw new InputException("node_id " + config.nodeId + " is not in the cluster file " + config.cluster);
    }
    // A fixed pool with one FIFO queue: a request's head tasks run in the order they came, so a
    // request finishes before later ones start (a work-stealing pool interleaved requests: bench
    // memory with 4 callers lost a fifth of its throughput and had a p99 of 400 ms).
    AtomicInteger threadIds = new AtomicInteger();
    this.pool = Executors.newFixedThreadPool(config.threads(), r -> {
      Thread t = new Thread(() -> {
        FaissIndex.setThreads(1);
        r.run();
      }, "memory-search-" + threadIds.getAndIncrement());
      t.setDaemon(true);
      return t;
    });
    this.sessions = new Sessions(Sessions.Limits.of(config), limits);
    this.remote = new RemoteNodes(config);
    PreloadBudget budget = new PreloadBudget(config.preload, config.preloadLimitBytes());
    RemoteCollections fetched = new RemoteCollections(config);
    for (Map.Entry<String, String> e : config.collections.entrySet()) {
      boolean remote = io.longmem.memory.fs.Locations.isRemote(e.getValue());
      Path dir = remote ? config.cacheDirectory() : config.localCollection(e.getValue());
      Set<String> mine = null;
      if (cluster != null) {
        mine = new HashSet<>(cluster.node(config.nodeId).shards.getOrDefault(e.getKey(), List.of()));
      }
      long t0 = System.nanoTime();
      try {
        boolean verify = config.verifyChecksums;
        if (remote) {
          dir = fetched.localize(e.getKey(), e.getValue(), mine); // only this node's shards
          verify = false; // the cache checked every file's size and checksum against the manifest
        }
        Manifest m = Manifest.read(dir);
        MemoryCollection.Preload preload = budget.take(e.getKey(), m, mine);
        MemoryCollection c = MemoryCollection.open(dir, m, config.expectedFingerprint, new MemoryCollection.Loading(
            verify, config.mmapIndexes, preload, mine));
        collections.put(e.getKey(), c);
        LOG.info("collection {}: {} tokens in {} shards ({} loaded here) from {} in {} ms", e.getKey(),
            c.manifest().rows(), c.manifest().shards().size(), c.shards().size(), dir,
            (System.nanoTime() - t0) / 1_000_000);
      } catch (IOException | RuntimeException ex) {
        // a damaged collection is refused (the node logs the path, clients get the reason without it)
        String why = ex.getMessage() != null ? ex.getMessage() : ex.toString();
        refused.put(e.getKey(), why);
        refusedShown.put(e.getKey(), Shown.withoutPaths(why, dir));
        LOG.error("collection {} refused: {}", e.getKey(), ex.getMessage());
      }
    }
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

  /**
   * The exact merge of the top-k of every shard and session the query names. Close the answer
   * once it is written: it pins the files its pairs lie in. (Its share of the budget of searches
   * in flight is given back on return; the gRPC service holds it until the answer is sent.)
   */
  public Hits search(SearchQuery q) {
    try (Admitted a = admit(q, false, Caller.ANONYMOUS.name())) {
      return search(a);
    }
  }

  /** The top-k over some of this node's shards of one collection (a coordinator asked). */
  public Hits searchShards(String collection, List<String> shards, SearchQuery q) {
    try (Admitted a = admitShards(collection, shards, q)) {
      return search(a);
    }
  }

  /**
   * A search checked, planned and costed, holding its share of the budget of searches in flight
   * until closed: every check and the refusal of an answer too large to send come before any work.
   */
  final class Admitted implements AutoCloseable {
    final SearchQuery q;
    final Work work;
    final List<MemorySource> sources;
    final int remoteSources;
    private long held;

    private Admitted(SearchQuery q, Work work, List<MemorySource> sources, int remoteSources, SearchCost cost) {
      this.q = q;
      this.work = work;
      this.sources = sources;
      this.remoteSources = remoteSources;
      if (cost.answerBytes() > config.maxMessageBytes()) {
        throw new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, "the answer could hold up to "
            + cost.answerBytes() + " bytes (per head up to queries x k pairs of a key and a value, and every "
            + "query's k scores and slots), more than max_message_mb (" + config.maxMessageBytes() + " bytes): "
            + "refused before searching; ask for fewer queries or heads, a smaller k, or float16_pairs");
      }
      this.held = inflight.await(cost.heldBytes(), config.inflightWaitMs, work::check,
          () -> "a search of " + q.heads() + " heads x " + q.queries() + " queries x k " + q.k());
    }

    @Override
    public void close() {
      if (held > 0) {
        inflight.give(held);
        held = 0;
      }
    }
  }

  /**
   * Admits a coordinator's search; {@code float16} is the answer's type (it sizes the answer), the
   * sessions it names must be {@code owner}'s.
   */
  Admitted admit(SearchQuery q, boolean float16, String owner) {
    limits.check(q);
    Work work = Work.of(pool);
    SearchPlan plan = SearchPlan.of(q, this::collection, id -> sessions.get(id, owner));
    List<MemorySource> sources = new ArrayList<>();
    long remoteRows = 0;
    for (Map.Entry<String, List<String>> e : plan.remote().entrySet()) {
      sources.add(remote.source(cluster, config.nodeId, e.getKey(), e.getValue()));
      Set<String> ids = new HashSet<>(e.getValue());
      for (Manifest.ShardEntry s : collection(e.getKey()).manifest().shards()) {
        remoteRows += ids.contains(s.id()) ? s.rows() : 0;
      }
    }
    int remoteSources = sources.size();
    boolean approximate = false;
    if (!plan.local().isEmpty()) {
      LocalShards local = new LocalShards(plan.local(), refine(q));
      approximate = local.approximate(q);
      sources.add(local);
    }
    sources.addAll(plan.sessions());
    return new Admitted(q, work, sources, remoteSources, SearchCost.of(q, plan.local(), approximate, refine(q),
        remoteSources, remoteRows, plan.sessions(), float16));
  }

  /** Admits a replica's part of a search (answers between nodes are float32). */
  Admitted admitShards(String collection, List<String> shards, SearchQuery q) {
    limits.check(q);
    Work work = Work.of(pool);
    SearchPlan plan = SearchPlan.ofShards(collection, shards, q, this::collection, config.nodeId);
    if (plan.local().isEmpty()) {
      return new Admitted(q, work, List.of(), 0, SearchCost.of(q, List.of(), false, 1, 0, 0, List.of(), false));
    }
    LocalShards local = new LocalShards(plan.local(), refine(q));
    return new Admitted(q, work, List.of(local), 0, SearchCost.of(q, plan.local(), local.approximate(q), refine(q),
        0, 0, List.of(), false));
  }

  /** Runs an admitted search (the caller closes it once the answer is sent). */
  Hits search(Admitted a) {
    return checked(fanOut(a.sources, a.remoteSources, a.q, a.work));
  }

  /** Refuses an answer over the message limit (releasing it). */
  private Hits checked(Hits merged) {
    try {
      SearchQuery.checkSize(merged, config.maxMessageBytes());
      return merged;
    } catch (RuntimeException e) {
      merged.close();
      throw e;
    }
  }

  /**
   * Asks every source at once and merges their answers (in the order of the sources: ties go to
   * the earlier). Every part is awaited, also when one fails, and the others are then released. A
   * refusal by another node comes first, then shards no replica answered for (UNAVAILABLE, naming
   * them all), then this node's own failures.
   *
   * @param remoteSources how many of the first sources are other nodes
   */
  private Hits fanOut(List<MemorySource> sources, int remoteSources, SearchQuery q, Work work) {
    work.check();
    if (sources.isEmpty()) {
      return new Hits(q.heads(), q.queries(), q.k(), q.headDim());
    }
    List<CompletableFuture<Hits>> parts = new ArrayList<>(sources.size());
    for (MemorySource s : sources) {
      CompletableFuture<Hits> f;
      try {
        f = s.search(q, work);
      } catch (RuntimeException e) {
        f = CompletableFuture.failedFuture(e);
      }
      parts.add(f);
    }
    try {
      CompletableFuture.allOf(parts.toArray(new CompletableFuture<?>[0])).handle((v, e) -> null).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      parts.forEach(f -> f.thenAccept(Hits::close)); // released when they finish
      throw new RequestException(RequestException.Kind.UNAVAILABLE, "interrupted");
    } catch (ExecutionException e) {
      throw new IllegalStateException(e); // not thrown: handle() swallows the parts' failures
    }
    List<Hits> done = new ArrayList<>(parts.size());
    List<String> missing = new ArrayList<>();
    RuntimeException refusedRemotely = null;
    RuntimeException failedHere = null;
    for (int i = 0; i < parts.size(); i++) {
      CompletableFuture<Hits> f = parts.get(i);
      if (!f.isCompletedExceptionally()) {
        done.add(f.join());
        continue;
      }
      RuntimeException cause = cause(f);
      if (cause instanceof MissingShardsException m) {
        missing.addAll(m.shards());
      } else if (i < remoteSources && refusedRemotely == null) {
        refusedRemotely = cause;
      } else if (i >= remoteSources && failedHere == null) {
        failedHere = cause;
      }
    }
    if (refusedRemotely != null || !missing.isEmpty() || failedHere != null) {
      Hits.closeAll(done);
      if (refusedRemotely != null) {
        throw refusedRemotely;
      }
      if (!missing.isEmpty()) {
        throw new RequestException(RequestException.Kind.UNAVAILABLE, "no live replica for shards " + missing
            + ": refusing to answer from part of the memory");
      }
      throw failedHere;
    }
    return done.size() == 1 ? done.get(0) : Hits.merge(done, q.heads(), q.queries(), q.k(), q.headDim());
  }

  /** Why a future failed, unwrapped. */
  private static RuntimeException cause(CompletableFuture<?> f) {
    try {
      f.join();
      throw new IllegalStateException("not failed");
    } catch (CompletionException e) {
      Throwable t = e.getCause() != null ? e.getCause() : e;
      return t instanceof RuntimeException re ? re : new IllegalStateException(t);
    } catch (java.util.concurrent.CancellationException e) {
      return new RequestException(RequestException.Kind.UNAVAILABLE, "cancelled");
    }
  }

  /**
   * Writes an answer with the node's pool for its parallel work (heads are written side by side
   * there, not in the common ForkJoinPool), then releases it (and its shards' pins).
   */
  public <T> T write(Hits hits, BiFunction<Hits, Executor, T> writer) {
    try (hits) {
      return writer.apply(hits, pool);
    }
  }


  /**
   * How many candidates each shard proposes for a pool of {@code candidates} (see {@link
   * LocalShards#proposals}).
   */
  public static int proposals(int k, int candidates, int shards) {
    return LocalShards.proposals(k, candidates, shards);
  }

  private MemoryCollection collection(String name) {
    MemoryCollection c = collections.get(name);
    if (c == null) {
      String why = refused.get(name);
      if (why != null) {
        // the node logged the reason with its paths; the client learns the reason alone
        throw new RequestException(RequestException.Kind.FAILED_PRECONDITION, "collection " + Shown.name(name)
            + " was refused at load: " + refusedShown.get(name));
      }
      throw RequestException.notFound("unknown collection " + Shown.name(name) + " (served: "
          + Shown.names(collections.keySet()) + ")");
    }
    return c;
  }

  private int refine(SearchQuery q) {
    return q.refine() > 0 ? q.refine() : config.refine;
  }

  // ---------------------------------------------------------------------------------------------
  // Sessions

  /*
   * A session belongs to the caller that created it ({@code owner}: its token's name, or the
   * anonymous caller's without authentication); a call naming it with another owner is answered
   * as for an unknown handle.
   */

  public String createSession(String owner, List<Integer> layers, int heads, int headDim) {
    return sessions.create(owner, layers, heads, headDim);
  }

  /** The node's sessions (what they hold, for tests and logs). */
  Sessions sessions() {
    return sessions;
  }

  /** The session of that id (NOT_FOUND if none): its heads and head_dim are what an append carries. */
  Session session(String id, String owner) {
    return sessions.get(id, owner);
  }

  /** See {@link Sessions#append}. */
  public long appendSession(String id, String owner, MemoryBlock block, boolean positioned) {
    return sessions.append(id, owner, block, positioned);
  }

  public void dropSession(String id, String owner) {
    sessions.drop(id, owner);
  }

  @Override
  public void close() {
    pool.shutdownNow();
    remote.close();
    sessions.close();
    collections.values().forEach(MemoryCollection::close);
  }
}
