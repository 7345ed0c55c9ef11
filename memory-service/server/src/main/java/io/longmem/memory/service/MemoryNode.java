package io.longmem.memory.service;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
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
  private final Sessions sessions;
  private final ExecutorService pool;
  private final RemoteNodes remote;

  public MemoryNode(ServiceConfig config) throws IOException {
    this.config = config;
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
    this.sessions = new Sessions(config.maxSessions, config.maxSessionTokens);
    this.remote = new RemoteNodes(config);
    PreloadBudget budget = new PreloadBudget(config.preload, config.preloadLimitBytes());
    for (Map.Entry<String, String> e : config.collections.entrySet()) {
      Path dir = config.resolve(e.getValue());
      Set<String> mine = null;
      if (cluster != null) {
        mine = new HashSet<>(cluster.node(config.nodeId).shards.getOrDefault(e.getKey(), List.of()));
      }
      long t0 = System.nanoTime();
      try {
        Manifest m = Manifest.read(dir);
        MemoryCollection.Preload preload = budget.take(e.getKey(), m, mine);
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
   * once it is written: it pins the files its pairs lie in.
   */
  public Hits search(SearchQuery q) {
    q.validate(config.maxK, config.maxMessageBytes());
    SearchPlan plan = SearchPlan.of(q, this::collection, sessions);
    List<MemorySource> sources = new ArrayList<>();
    for (Map.Entry<String, List<String>> e : plan.remote().entrySet()) {
      sources.add(remote.source(cluster, config.nodeId, e.getKey(), e.getValue()));
    }
    int remoteSources = sources.size();
    if (!plan.local().isEmpty()) {
      sources.add(new LocalShards(plan.local(), refine(q)));
    }
    sources.addAll(plan.sessions());
    return checked(fanOut(sources, remoteSources, q));
  }

  /** The top-k over some of this node's shards of one collection (a coordinator asked). */
  public Hits searchShards(String collection, List<String> shards, SearchQuery q) {
    q.validate(config.maxK, config.maxMessageBytes());
    SearchPlan plan = SearchPlan.ofShards(collection, shards, q, this::collection, config.nodeId);
    List<MemorySource> sources = plan.local().isEmpty() ? List.of() : List.of(new LocalShards(plan.local(), refine(q)));
    return checked(fanOut(sources, 0, q));
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
  private Hits fanOut(List<MemorySource> sources, int remoteSources, SearchQuery q) {
    if (sources.isEmpty()) {
      return new Hits(q.heads(), q.queries(), q.k(), q.headDim());
    }
    List<CompletableFuture<Hits>> parts = new ArrayList<>(sources.size());
    for (MemorySource s : sources) {
      CompletableFuture<Hits> f;
      try {
        f = s.search(q, pool);
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
        throw new RequestException(RequestException.Kind.FAILED_PRECONDITION, "collection " + name
            + " was refused at load: " + why);
      }
      throw RequestException.notFound("unknown collection " + name + " (served: " + collections.keySet() + ")");
    }
    return c;
  }

  private int refine(SearchQuery q) {
    return q.refine() > 0 ? q.refine() : config.refine;
  }

  // ---------------------------------------------------------------------------------------------
  // Sessions

  public String createSession(List<Integer> layers, int heads, int headDim) {
    return sessions.create(layers, heads, headDim);
  }

  /** The session of that id (NOT_FOUND if none): its heads and head_dim are what an append carries. */
  Session session(String id) {
    return sessions.get(id);
  }

  /** See {@link Sessions#append}. */
  public long appendSession(String id, MemoryBlock block, boolean positioned) {
    return sessions.append(id, block, positioned);
  }

  public void dropSession(String id) {
    sessions.drop(id);
  }

  @Override
  public void close() {
    pool.shutdownNow();
    remote.close();
    sessions.close();
    collections.values().forEach(MemoryCollection::close);
  }
}
