package io.longmem.memory.service;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
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
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Channels to the other nodes of a cluster, and the failover that sends each remote shard to its
 * first replica that answers. Calls go out through the async stub: the replicas of one round are
 * asked at once, and nothing blocks a thread while they work.
 */
final class RemoteNodes implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(RemoteNodes.class);
  private final ServiceConfig config;
  private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();

  RemoteNodes(ServiceConfig config) {
    this.config = config;
  }

  /** The shards of a collection held elsewhere, as one source (see {@link #search}). */
  MemorySource source(ClusterConfig cluster, String self, String collection, List<String> shards) {
    return (q, pool) -> search(cluster, self, collection, shards, q, pool);
  }

  /**
   * Searches shards held elsewhere: each goes to its first replica (other than this node) that
   * answers. In rounds: the pending shards are grouped by the replica each is to try next and
   * every group is sent at once; the shards of groups that failed try their next replica in the
   * next round. Fails with a {@link MissingShardsException} naming the shards whose replicas all
   * failed, or with the {@link RequestException} of a replica that refused the request itself.
   */
  CompletableFuture<Hits> search(ClusterConfig cluster, String self, String collection, List<String> shards,
      SearchQuery q, Executor pool) {
    List<String> missing = new ArrayList<>();
    if (cluster == null) {
      shards.forEach(s -> missing.add(collection + "/" + s));
      return CompletableFuture.failedFuture(new MissingShardsException(missing));
    }
    Map<String, Integer> attempt = new LinkedHashMap<>();
    shards.forEach(s -> attempt.put(s, 0));
    List<Hits> parts = new ArrayList<>();
    return round(cluster, self, collection, q, pool, attempt, missing, parts).thenApplyAsync(v -> {
      if (!missing.isEmpty()) {
        throw new MissingShardsException(missing);
      }
      return parts.size() == 1 ? parts.get(0) : Hits.merge(parts, q.heads(), q.queries(), q.k(), q.headDim());
    }, pool);
  }

  /** One outcome of a call: the answer, or why not. */
  private record Outcome(Hits hits, Throwable error) {}

  /** Sends the pending shards of {@code attempt} to their next replicas, then the failed ones again. */
  private CompletableFuture<Void> round(ClusterConfig cluster, String self, String collection, SearchQuery q,
      Executor pool, Map<String, Integer> attempt, List<String> missing, List<Hits> parts) {
    Map<ClusterConfig.Node, List<String>> byNode = new LinkedHashMap<>();
    for (Map.Entry<String, Integer> e : new ArrayList<>(attempt.entrySet())) {
      List<ClusterConfig.Node> replicas = cluster.replicas(collection, e.getKey());
      replicas.removeIf(n -> n.id.equals(self));
      if (e.getValue() >= replicas.size()) {
        missing.add(collection + "/" + e.getKey());
        attempt.remove(e.getKey());
        continue;
      }
      byNode.computeIfAbsent(replicas.get(e.getValue()), n -> new ArrayList<>()).add(e.getKey());
    }
    if (byNode.isEmpty()) {
      return CompletableFuture.completedFuture(null);
    }
    List<Map.Entry<ClusterConfig.Node, List<String>>> groups = new ArrayList<>(byNode.entrySet());
    List<CompletableFuture<Outcome>> calls = new ArrayList<>();
    for (Map.Entry<ClusterConfig.Node, List<String>> g : groups) {
      calls.add(call(g.getKey(), collection, g.getValue(), q, pool)
          .handle((h, e) -> new Outcome(h, e instanceof CompletionException && e.getCause() != null ? e.getCause() : e)));
    }
    // the next round is planned on the node's pool, not on the gRPC thread that saw the last answer
    return CompletableFuture.allOf(calls.toArray(new CompletableFuture<?>[0])).thenComposeAsync(v -> {
      RuntimeException refused = null;
      for (int i = 0; i < groups.size(); i++) {
        ClusterConfig.Node node = groups.get(i).getKey();
        List<String> group = groups.get(i).getValue();
        Outcome o = calls.get(i).join();
        if (o.error() == null) {
          parts.add(o.hits());
          group.forEach(attempt::remove);
        } else if (o.error() instanceof ReplicaUnavailableException r) {
          LOG.warn("{} ({}) failed for {} shards {}; trying other replicas", r.getMessage(), node.address, collection,
              group);
          group.forEach(s -> attempt.merge(s, 1, Integer::sum));
        } else if (refused == null) {
          refused = o.error() instanceof RuntimeException re ? re : new IllegalStateException(o.error());
        }
      }
      if (refused != null) {
        return CompletableFuture.failedFuture(refused);
      }
      return round(cluster, self, collection, q, pool, attempt, missing, parts);
    }, pool);
  }

  /** One call of searchShards on a replica; its answer is decoded on the node's pool. */
  private CompletableFuture<Hits> call(ClusterConfig.Node node, String collection, List<String> shards,
      SearchQuery q, Executor pool) {
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
        return new ReplicaUnavailableException(node.id, s.toString(), t);
      default:
        return new RequestException(RequestException.Kind.INVALID_ARGUMENT, s.getDescription());
    }
  }

  private MemoryGrpc.MemoryStub stub(ClusterConfig.Node node) {
    NodeSecurity security = config.security();
    ManagedChannel ch = channels.computeIfAbsent(node.address, a -> NettyChannelBuilder
        .forTarget(a, security.peerCredentials())
        .maxInboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes())).build());
    MemoryGrpc.MemoryStub stub = MemoryGrpc.newStub(ch).withDeadlineAfter(config.remoteDeadlineMs, TimeUnit.MILLISECONDS)
        .withMaxOutboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes()));
    return security.nodeToken() == null ? stub : stub.withCallCredentials(security.nodeToken());
  }

  @Override
  public void close() {
    for (ManagedChannel ch : channels.values()) {
      ch.shutdownNow();
    }
  }
}
