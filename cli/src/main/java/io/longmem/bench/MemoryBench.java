package io.longmem.bench;

import io.longmem.memory.api.Wire;
import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.faiss.FaissIndex;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.service.Hits;
import io.longmem.memory.service.MemoryNode;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.Protos;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code bin/longmem bench memory}: searches shaped like LongLLaMA-3B's (a decode step: 32 heads x
 * 1 query; a prefill chunk: 32 heads x 512 queries; head_dim 100) against a collection of clustered
 * keys, through the gRPC service on loopback and, as baselines measured in the same run
 * (alternating): the same FAISS searches on the same indexes in process (the candidates the
 * service asks each shard for, nothing around them); the node's search called in process (those
 * searches plus the exact re-scoring that gives the answer its recall); and the node's search with
 * its answer built in process (the service's work without gRPC). The collection is written, once,
 * by {@link SyntheticCollection}.
 */
public final class MemoryBench {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryBench.class);
  private static final int LAYER = 0;

  /** What to build and measure. */
  public record Options(long tokens, int heads, int headDim, int clusters, int shardTokens, String factory,
      boolean float16, int nprobe, int refine, int k, int decodeRequests, int prefillQueries, int prefillK,
      int prefillRequests, int recallHeads, int[] clients, long preloadLimitMb, Path dir) {}

  private MemoryBench() {}

  public static void run(Options o) throws Exception {
    Path dir = o.dir();
    if (!Files.exists(dir.resolve(Manifest.FILE))) {
      build(o);
    } else {
      LOG.info("reusing the collection in {}", dir);
    }
    ServiceConfig config = new ServiceConfig();
    config.port = 0;
    config.collections = Map.of("bench", dir.toString());
    config.verifyChecksums = false; // sizes are still checked; hashing 10+ GB is not what is measured
    config.maxMessageMb = 2047;
    config.maxK = Math.max(o.k(), o.prefillK());
    config.preloadLimitMb = o.preloadLimitMb();
    SyntheticCollection.Centres centres = new SyntheticCollection.Centres(o.heads(), o.headDim(), o.clusters(), 1);
    try (MemoryServer server = MemoryServer.start(config)) {
      MemoryCollection collection = server.node().collections().get("bench");
      if (collection == null) {
        throw new IllegalStateException("the bench collection was refused: " + server.node().refused());
      }
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext()
          .maxInboundMessageSize(Integer.MAX_VALUE).build();
      try {
        MemoryGrpc.MemoryBlockingStub stub = MemoryGrpc.newBlockingStub(ch).withMaxOutboundMessageSize(Integer.MAX_VALUE);
        System.out.printf("bench memory: %d tokens x %d heads x head_dim %d (%d shards), index %s, nprobe %d, "
            + "refine %d, %d CPU cores%n", collection.manifest().rows(), o.heads(), o.headDim(),
            collection.shards().size(), o.factory(), o.nprobe(), o.refine(), Runtime.getRuntime().availableProcessors());
        float[][] decode = new float[o.decodeRequests()][];
        for (int i = 0; i < decode.length; i++) {
          decode[i] = centres.queries(1, 1000 + i);
        }
        roundTrip(ch, Math.max(100, o.decodeRequests()));
        for (int clients : o.clients()) {
          measure("decode step (" + o.heads() + " heads x 1 query, k " + o.k() + ")", stub, server.node(), collection,
              decode, 1, o.k(), clients, o);
        }
        float[][] prefill = new float[o.prefillRequests()][];
        for (int i = 0; i < prefill.length; i++) {
          prefill[i] = centres.queries(o.prefillQueries(), 5000 + i);
        }
        if (prefill.length > 0) {
          measure("prefill chunk (" + o.heads() + " heads x " + o.prefillQueries() + " queries, k " + o.prefillK() + ")",
              stub, server.node(), collection, prefill, o.prefillQueries(), o.prefillK(), 1, o);
        }
        if (o.recallHeads() > 0) {
          recall(stub, collection, decode, o);
        }
      } finally {
        ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
    }
  }

  private static SearchRequest request(float[] q, int queries, int k, Options o) {
    return SearchRequest.newBuilder().addCollections("bench").setLayer(LAYER).setHeads(o.heads()).setQueries(queries)
        .setHeadDim(o.headDim()).setQuery(Wire.bytes(q, q.length)).setK(k).setNprobe(o.nprobe())
        .setRefine(o.refine()).setFloat16Pairs(o.float16()).build();
  }

  /**
   * Service, FAISS-only, node-search and node-answer runs of the same requests. {@code clients} callers issue
   * requests at once (throughput under load; 1: one request at a time, latency-bound). The four
   * alternate block by block (clients x 4 requests), each first in turn, so all see the same page cache and JIT
   * state.
   */
  private static void measure(String what, MemoryGrpc.MemoryBlockingStub stub, MemoryNode node,
      MemoryCollection collection, float[][] queries, int n, int k, int clients, Options o) throws Exception {
    SearchRequest[] requests = new SearchRequest[queries.length];
    for (int i = 0; i < requests.length; i++) {
      requests[i] = request(queries[i], n, k, o);
    }
    // warm-up: page in the touched lists and rows, JIT
    for (int i = 0; i < Math.min(3, queries.length); i++) {
      stub.search(requests[i]);
      inProcess(collection, queries[i], n, k, o);
      answer(node, requests[i]);
    }
    double[] service = new double[queries.length];
    double[] local = new double[queries.length];
    double[] refined = new double[queries.length];
    double[] answered = new double[queries.length];
    double[] wall = new double[4];
    long[] pairs = new long[1];
    java.util.concurrent.ExecutorService callers = java.util.concurrent.Executors.newFixedThreadPool(clients);
    try {
      int block = clients == 1 ? 1 : clients * 4;
      for (int from = 0, b = 0; from < queries.length; from += block, b++) {
        int lo = from;
        int hi = Math.min(queries.length, from + block);
        Runner[] variants = {
          () -> run(callers, lo, hi, service, i -> {
            SearchResponse r = stub.search(requests[i]);
            synchronized (pairs) {
              pairs[0] += r.getHeadsList().stream().mapToInt(h -> h.getPairs()).sum();
            }
          }),
          () -> run(callers, lo, hi, local, i -> inProcess(collection, queries[i], n, k, o)),
          () -> run(callers, lo, hi, refined, i -> node.search(Protos.toQuery(requests[i])).close()),
          () -> run(callers, lo, hi, answered, i -> answer(node, requests[i]))};
        // each variant goes first in turn: the first to read a block's rows pays their page faults
        for (int j = 0; j < variants.length; j++) {
          int v = (b + j) % variants.length;
          wall[v] += variants[v].run();
        }
      }
    } finally {
      callers.shutdownNow();
    }
    double serviceQps = queries.length / wall[0];
    double localQps = queries.length / wall[1];
    double refinedQps = queries.length / wall[2];
    double answeredQps = queries.length / wall[3];
    System.out.printf("%s: %d requests, %d client(s) at once%n", what, queries.length, clients);
    System.out.printf("  service (gRPC, loopback): %.2f QPS, p50 %.1f ms, p99 %.1f ms, %d distinct pairs/request "
        + "returned with keys and values%n", serviceQps, pct(service, 50), pct(service, 99), pairs[0] / queries.length);
    System.out.printf("  in process, FAISS searches only (the service's calls, no re-scoring): %.2f QPS, p50 %.1f ms, "
        + "p99 %.1f ms%n", localQps, pct(local, 50), pct(local, 99));
    System.out.printf("  in process, FAISS + exact re-scoring (the node's search; ids and scores, no pairs read): "
        + "%.2f QPS, p50 %.1f ms, p99 %.1f ms%n", refinedQps, pct(refined, 50), pct(refined, 99));
    System.out.printf("  in process, the same answer (the node's search and its answer with keys and values, no "
        + "gRPC): %.2f QPS, p50 %.1f ms, p99 %.1f ms%n", answeredQps, pct(answered, 50), pct(answered, 99));
    System.out.printf("  service / in process = %.2fx throughput (FAISS only), %.2fx (FAISS + re-scoring), %.2fx (the "
        + "same answer)%n", serviceQps / localQps, serviceQps / refinedQps, serviceQps / answeredQps);
  }

  private interface Runner {
    double run() throws Exception;
  }

  /** Requests [from, to) on the callers, each latency in ms into {@code ms}; returns the wall seconds. */
  private static double run(java.util.concurrent.ExecutorService callers, int from, int to, double[] ms,
      java.util.function.IntConsumer request) throws Exception {
    List<java.util.concurrent.Future<?>> done = new ArrayList<>();
    long start = System.nanoTime();
    for (int i = from; i < to; i++) {
      int at = i;
      done.add(callers.submit(() -> {
        long s = System.nanoTime();
        request.accept(at);
        ms[at] = (System.nanoTime() - s) / 1e6;
      }));
    }
    for (var f : done) {
      f.get();
    }
    return (System.nanoTime() - start) / 1e9;
  }

  /**
   * The FAISS searches the service makes (refine x k candidates from an approximate index), on
   * the same indexes, with the same parallelism (one task per shard on as many threads as the
   * service uses), without anything around them.
   */
  private static void inProcess(MemoryCollection c, float[] q, int n, int k, Options o) {
    int per = n * o.headDim();
    FaissIndex.SearchParams p = new FaissIndex.SearchParams(o.nprobe(), 0);
    List<java.util.concurrent.Future<?>> tasks = new ArrayList<>();
    for (MemoryCollection.Shard s : c.shards()) {
      tasks.add(POOL.submit(() -> {
        for (int h = 0; h < o.heads(); h++) {
          FaissIndex index = s.index(LAYER, h);
          int fetch = index.isExact() || o.refine() <= 1 ? k
              : (int) Math.min(MemoryNode.proposals(k, Math.min(k * o.refine(), FaissIndex.MAX_K), c.shards().size()),
                  s.rows());
          index.search(Arrays.copyOfRange(q, h * per, (h + 1) * per), fetch, p);
        }
      }));
    }
    for (var t : tasks) {
      try {
        t.get();
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }
  }

  private static final java.util.concurrent.ExecutorService POOL = java.util.concurrent.Executors.newFixedThreadPool(
      Runtime.getRuntime().availableProcessors(), r -> {
        Thread t = new Thread(() -> {
          FaissIndex.setThreads(1); // as the service's search pool runs FAISS
          r.run();
        }, "bench-in-process");
        t.setDaemon(true);
        return t;
      });

  /** recall@k of the service's answers against exact search, on a few heads. */
  private static void recall(MemoryGrpc.MemoryBlockingStub stub, MemoryCollection c, float[][] queries, Options o) {
    int heads = Math.min(o.recallHeads(), o.heads());
    double hits = 0;
    double rawHits = 0;
    double total = 0;
    for (int h = 0; h < heads; h++) {
      // exact top-k over this head's keys of every shard, identified by (document, position)
      List<float[]> keysPerShard = new ArrayList<>();
      for (MemoryCollection.Shard s : c.shards()) {
        float[] keys = new float[(int) s.rows() * o.headDim()];
        for (long r = 0; r < s.rows(); r++) {
          s.readKey(LAYER, r, h, keys, (int) r * o.headDim());
        }
        keysPerShard.add(keys);
      }
      for (float[] q : queries) {
        float[] qh = Arrays.copyOfRange(q, h * o.headDim(), (h + 1) * o.headDim());
        List<String> exact = exactTopK(c, keysPerShard, qh, o.k(), o.headDim());
        Set<String> found = found(stub.search(request(q, 1, o.k(), o)), h, o);
        // the top-k by the index's estimates alone (refine 1): what FAISS answers without re-scoring
        Set<String> raw = found(stub.search(request(q, 1, o.k(), o).toBuilder().setRefine(1).build()), h, o);
        for (String e : exact) {
          hits += found.contains(e) ? 1 : 0;
          rawHits += raw.contains(e) ? 1 : 0;
        }
        total += exact.size();
      }
    }
    System.out.printf("recall@%d against exact search (%d heads x %d decode queries): %.3f (refine %d); %.3f by the "
        + "index's estimates alone (refine 1)%n", o.k(), heads, queries.length, hits / total, o.refine(),
        rawHits / total);
  }

  /** The node's search and its answer as the service writes it, without gRPC. */
  private static SearchResponse answer(MemoryNode node, SearchRequest r) {
    return node.write(node.search(Protos.toQuery(r)), (hits, pool) -> Protos.toResponse(hits, r.getFloat16Pairs(), pool));
  }

  private static Set<String> found(SearchResponse r, int h, Options o) {
    Hits got = Protos.fromResponse(r, o.heads(), 1, o.k(), o.headDim(), o.float16());
    Set<String> found = new HashSet<>();
    Hits.Head head = got.head(h);
    for (int j = 0; j < o.k(); j++) {
      int slot = head.slots()[j];
      if (slot >= 0) {
        found.add(got.documents().get(head.pairDocument()[slot]) + "@" + head.pairPosition()[slot]);
      }
    }
    return found;
  }

  private static List<String> exactTopK(MemoryCollection c, List<float[]> keysPerShard, float[] q, int k, int dim) {
    List<Object[]> best = new ArrayList<>();
    for (int s = 0; s < keysPerShard.size(); s++) {
      float[] keys = keysPerShard.get(s);
      MemoryCollection.Shard shard = c.shards().get(s);
      long rows = shard.rows();
      // keep a running top-k
      float[] topScore = new float[k];
      long[] topRow = new long[k];
      Arrays.fill(topScore, Float.NEGATIVE_INFINITY);
      Arrays.fill(topRow, -1);
      for (int r = 0; r < rows; r++) {
        float dot = 0;
        int base = r * dim;
        for (int d = 0; d < dim; d++) {
          dot += q[d] * keys[base + d];
        }
        if (dot > topScore[k - 1]) {
          int at = k - 1;
          while (at > 0 && topScore[at - 1] < dot) {
            topScore[at] = topScore[at - 1];
            topRow[at] = topRow[at - 1];
            at--;
          }
          topScore[at] = dot;
          topRow[at] = r;
        }
      }
      for (int i = 0; i < k; i++) {
        if (topRow[i] >= 0) {
          best.add(new Object[] {topScore[i], shard.documentOf(topRow[i]) + "@" + shard.position(topRow[i])});
        }
      }
    }
    best.sort((a, b) -> Float.compare((float) b[0], (float) a[0]));
    List<String> out = new ArrayList<>();
    for (int i = 0; i < Math.min(k, best.size()); i++) {
      out.add((String) best.get(i)[1]);
    }
    return out;
  }

  /**
   * The fixed cost of one call on this machine: an empty request and answer (grpc.health.v1
   * Check) on the same channel, one at a time. Every search pays it on top of its work.
   */
  private static void roundTrip(ManagedChannel ch, int n) {
    HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(ch);
    double[] ms = new double[n];
    for (int i = -10; i < n; i++) {
      long s = System.nanoTime();
      health.check(HealthCheckRequest.getDefaultInstance());
      if (i >= 0) {
        ms[i] = (System.nanoTime() - s) / 1e6;
      }
    }
    System.out.printf("an empty call (health check), one at a time: p50 %.2f ms, mean %.2f ms%n", pct(ms, 50),
        Arrays.stream(ms).average().orElse(0));
  }

  private static double pct(double[] ms, int p) {
    double[] s = ms.clone();
    Arrays.sort(s);
    return s[Math.min(s.length - 1, (int) Math.ceil(p / 100.0 * s.length) - 1)];
  }

  /** Writes the collection: keys around random centres (per head), random values. */
  private static void build(Options o) throws IOException {
    SyntheticCollection.write(o, LAYER, "sha256:bench", CollectionWriter.DEFAULT_TRAINING_ROWS);
  }
}
