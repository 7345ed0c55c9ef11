package io.longmem.memory.service;

import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.channel.ChannelOption;
import io.grpc.stub.StreamObserver;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.grpc.SearchShardsRequest;
import io.longmem.memory.security.NodeSecurity;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Channels to the other nodes of a cluster, and the failover between replicas. The remote shards
 * of a search are grouped by their replicas (live ones first, {@link NodeHealth}); each group goes
 * to its best replica and, when that has not answered after {@code hedge_ms} or failed, to the
 * next one as well ({@link Hedge}): the first good answer wins and the other calls are cancelled.
 * Calls go out through the async stub, nothing blocks a thread while they work, and every call runs
 * in a child of the caller's context: cancelled when the caller goes and once the search is done.
 */
final class RemoteNodes implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(RemoteNodes.class);
  private final ServiceConfig config;
  private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
  private final ScheduledExecutorService timer;
  private final NodeHealth health;
  private final NodeMetrics metrics;

  /** The other nodes of {@code cluster} (null: none), checked as {@link NodeHealth} says. */
  RemoteNodes(ServiceConfig config, ClusterConfig cluster, NodeMetrics metrics) {
    this.config = config;
    this.metrics = metrics;
    this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "memory-remote-timer");
      t.setDaemon(true);
      return t;
    });
    this.health = new NodeHealth(config.healthIntervalMs, this::channel);
    if (cluster != null) {
      health.watch(cluster.nodes.stream().filter(n -> !n.id.equals(config.nodeId)).toList(), timer);
    }
  }

  NodeHealth health() {
    return health;
  }

  /** The shards of a collection held elsewhere, as one source (see {@link #search}). */
  MemorySource source(ClusterConfig cluster, String self, String collection, List<String> shards) {
    return (q, pool) -> search(cluster, self, collection, shards, q, pool);
  }

  /**
   * Searches shards held elsewhere, each group of shards with the same replicas (other than this
   * node) hedged over them. Fails with a {@link MissingShardsException} naming the shards no
   * replica answered for, or with the {@link RequestException} of a replica that refused the
   * request itself.
   */
  CompletableFuture<Hits> search(ClusterConfig cluster, String self, String collection, List<String> shards,
      SearchQuery q, Executor pool) {
    List<String> missing = new ArrayList<>();
    if (cluster == null) {
      shards.forEach(s -> missing.add(collection + "/" + s));
      return CompletableFuture.failedFuture(new MissingShardsException(missing));
    }
    Map<List<ClusterConfig.Node>, List<String>> groups = new LinkedHashMap<>();
    for (String shard : shards) {
      List<ClusterConfig.Node> replicas = cluster.replicas(collection, shard);
      replicas.removeIf(n -> n.id.equals(self));
      groups.computeIfAbsent(health.order(replicas), r -> new ArrayList<>()).add(shard);
    }
    Context.CancellableContext calls = (pool instanceof Work w ? w.context() : Context.current()).withCancellation();
    List<CompletableFuture<Hits>> parts = new ArrayList<>();
    for (Map.Entry<List<ClusterConfig.Node>, List<String>> g : groups.entrySet()) {
      parts.add(new Hedge(collection, g.getValue(), g.getKey(), q, pool, calls).start());
    }
    CompletableFuture<Hits> out = CompletableFuture.allOf(parts.toArray(new CompletableFuture<?>[0]))
        .handleAsync((v, ignored) -> {
          List<Hits> done = new ArrayList<>();
          RuntimeException refused = null;
          for (CompletableFuture<Hits> f : parts) {
            if (!f.isCompletedExceptionally()) {
              done.add(f.join());
              continue;
            }
            Throwable t = unwrap(f.handle((h, e) -> e).join());
            if (t instanceof MissingShardsException m) {
              missing.addAll(m.shards());
            } else if (refused == null) {
              refused = t instanceof RuntimeException re ? re : new IllegalStateException(t);
            }
          }
          if (refused != null || !missing.isEmpty()) {
            Hits.closeAll(done);
            throw refused != null ? refused : new MissingShardsException(missing);
          }
          return done.size() == 1 ? done.get(0) : Hits.merge(done, q.heads(), q.queries(), q.k(), q.headDim());
        }, pool);
    out.whenComplete((h, e) -> calls.cancel(null));
    return out;
  }

  private static Throwable unwrap(Throwable e) {
    return e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
  }

  /**
   * One group of shards over its replicas, best first: the next replica is asked when the last one
   * asked has not answered after {@code hedge_ms} or has failed; the first answer wins and the
   * calls still out are cancelled (their late answers released). A refusal of the request itself
   * ends the group; when every replica failed the shards are missing.
   */
  private final class Hedge {
    private final String collection;
    private final List<String> shards;
    private final List<ClusterConfig.Node> replicas;
    private final SearchQuery q;
    private final Executor pool;
    private final Context.CancellableContext calls;
    private final CompletableFuture<Hits> result = new CompletableFuture<>();
    private final List<Context.CancellableContext> out = new ArrayList<>();
    private int next;
    private int pending;
    private boolean finished;
    private ScheduledFuture<?> hedge;

    Hedge(String collection, List<String> shards, List<ClusterConfig.Node> replicas, SearchQuery q, Executor pool,
        Context.CancellableContext calls) {
      this.collection = collection;
      this.shards = shards;
      this.replicas = replicas;
      this.q = q;
      this.pool = pool;
      this.calls = calls;
    }

    CompletableFuture<Hits> start() {
      synchronized (this) {
        if (replicas.isEmpty()) {
          finish();
          result.completeExceptionally(missing());
        } else {
          send();
        }
      }
      return result;
    }

    /** Sends the group to its next replica (under the lock). */
    private void send() {
      if (finished || next >= replicas.size() || calls.isCancelled()) {
        return;
      }
      if (hedge != null) {
        hedge.cancel(false);
        hedge = null;
      }
      ClusterConfig.Node node = replicas.get(next++);
      pending++;
      Context.CancellableContext attempt = calls.withCancellation();
      out.add(attempt);
      call(node, collection, shards, q, pool, attempt).whenComplete((h, e) -> done(node, h, e));
      if (hedge == null && !finished && next < replicas.size()) { // (a call that failed at once sent the next)
        try {
          hedge = timer.schedule(this::hedge, config.hedgeMs, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.RejectedExecutionException closing) {
          // the node is closing: no more replicas are tried
        }
      }
    }

    private synchronized void hedge() {
      if (!finished) {
        LOG.debug("{} shards {}: no answer after {} ms, asking the next replica too", collection, shards,
            config.hedgeMs);
        send();
      }
    }

    private synchronized void done(ClusterConfig.Node node, Hits hits, Throwable error) {
      pending--;
      metrics.remoteCall(node.id, error == null ? "ok" : finished ? "cancelled"
          : unwrap(error) instanceof ReplicaUnavailableException ? "unavailable" : "refused");
      if (finished) {
        if (hits != null) {
          hits.close(); // a slower replica's answer: not needed
        }
        return;
      }
      if (error == null) {
        health.answered(node);
        finish();
        result.complete(hits);
        return;
      }
      Throwable cause = unwrap(error);
      if (cause instanceof ReplicaUnavailableException r) {
        health.failed(node, Status.fromThrowable(r.getCause() != null ? r.getCause() : r), calls.isCancelled());
        if (!calls.isCancelled()) {
          metrics.failovers(shards.size());
          LOG.warn("{} ({}) failed for {} shards {}; trying other replicas", r.getMessage(), node.address,
              collection, shards);
        }
        send();
        if (pending == 0) {
          finish();
          result.completeExceptionally(missing());
        }
        return;
      }
      finish();
      result.completeExceptionally(cause);
    }

    /** Stops the group: no more replicas, the calls still out are cancelled (under the lock). */
    private void finish() {
      finished = true;
      if (hedge != null) {
        hedge.cancel(false);
      }
      out.forEach(c -> c.cancel(null));
    }

    private MissingShardsException missing() {
      List<String> names = new ArrayList<>();
      shards.forEach(s -> names.add(collection + "/" + s));
      return new MissingShardsException(names);
    }
  }

  /** One call of searchShards on a replica; its answer is decoded on the node's pool. */
  private CompletableFuture<Hits> call(ClusterConfig.Node node, String collection, List<String> shards,
      SearchQuery q, Executor pool, Context calls) {
    CompletableFuture<SearchResponse> answer = new CompletableFuture<>();
    MemoryGrpc.MemoryStub stub;
    SearchShardsRequest request;
    try {
      stub = stub(node);
      request = SearchShardsRequest.newBuilder().setSearch(Protos.toProto(q)).setCollection(collection)
          .addAllShards(shards).build();
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    Context previous = calls.attach(); // the call is a child of the search: cancelled with it
    try {
        stub.searchShards(request, new StreamObserver<>() {
        @Override
        public void onNext(SearchResponse r) {
          answer.complete(r);
        }

        @Override
        public void onError(Throwable t) {
          answer.completeExceptionally(failure(node, t));
        }

        @Override
        public void onCompleted() {
          answer.completeExceptionally(new ReplicaUnavailableException(node.id, "no answer", null)); // no-op if answered
        }
      });
    } finally {
      calls.detach(previous);
    }
    return answer.thenApplyAsync(r -> {
      try {
        return Protos.fromResponse(r, q.heads(), q.queries(), q.k(), q.headDim());
      } catch (RuntimeException e) {
        throw new ReplicaUnavailableException(node.id, "answered badly: " + e.getMessage(), e);
      }
    }, pool);
  }

  /**
   * A failed call: another replica may answer where the node or the call failed; where the request
   * itself is at fault every replica would say the same.
   */
  private static RuntimeException failure(ClusterConfig.Node node, Throwable t) {
    Status s = Status.fromThrowable(t);
    switch (s.getCode()) {
      case NOT_FOUND:
        return new RequestException(RequestException.Kind.NOT_FOUND, s.getDescription());
      case RESOURCE_EXHAUSTED:
        return new RequestException(RequestException.Kind.RESOURCE_EXHAUSTED, s.getDescription());
      case FAILED_PRECONDITION:
        return new RequestException(RequestException.Kind.FAILED_PRECONDITION, s.getDescription());
      case UNAUTHENTICATED:
      case PERMISSION_DENIED: // this node's configuration, not the request: the caller cannot fix it
        return new RequestException(RequestException.Kind.UNAVAILABLE, "node " + Shown.name(node.id)
            + " refused this node's call (" + s.getCode() + ": " + Shown.name(s.getDescription())
            + "): give this node a token with the admin role there (auth.node_token_file or "
            + NodeSecurity.NODE_TOKEN_ENV + ")");
      case UNAVAILABLE:
      case DEADLINE_EXCEEDED:
      case CANCELLED:
      case INTERNAL:
      case UNKNOWN:
        return new ReplicaUnavailableException(node.id, s.getCode() + (s.getDescription() != null ? ": "
            + s.getDescription() : "") + (s.getCause() != null ? " (" + s.getCause().getMessage() + ")" : ""), t);
      default:
        return new RequestException(RequestException.Kind.INVALID_ARGUMENT, s.getDescription());
    }
  }

  /**
   * The channel to a node, made on first use: TLS with {@code peer_ca} where configured (connect
   * timeout: {@code remote_connect_ms}).
   */
  private ManagedChannel channel(ClusterConfig.Node node) {
    NodeSecurity security = config.security();
    return channels.computeIfAbsent(node.address, a -> NettyChannelBuilder.forTarget(a, security.peerCredentials())
        .withOption(ChannelOption.CONNECT_TIMEOUT_MILLIS, config.remoteConnectMs)
        .maxInboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes())).build());
  }

  private MemoryGrpc.MemoryStub stub(ClusterConfig.Node node) {
    NodeSecurity security = config.security();
    MemoryGrpc.MemoryStub stub = MemoryGrpc.newStub(channel(node)).withDeadlineAfter(config.remoteDeadlineMs, TimeUnit.MILLISECONDS)
        .withMaxOutboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes()));
    return security.nodeToken() == null ? stub : stub.withCallCredentials(security.nodeToken());
  }

  @Override
  public void close() {
    timer.shutdownNow();
    for (ManagedChannel ch : channels.values()) {
      ch.shutdownNow();
    }
  }
}
