package io.longmem.memory.service;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.grpc.SearchShardsRequest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Channels to the other nodes of a cluster, and the failover that sends each remote shard to its
 * first replica that answers.
 */
final class RemoteNodes implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(RemoteNodes.class);
  private final ServiceConfig config;
  private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();

  RemoteNodes(ServiceConfig config) {
    this.config = config;
  }

  /**
   * Searches shards held elsewhere: each goes to its first replica (other than this node) that
   * answers; shards whose replicas all fail are added to {@code missing}.
   */
  List<Hits> search(ClusterConfig cluster, String self, String collection, List<String> shards, SearchQuery q,
      List<String> missing) {
    List<Hits> out = new ArrayList<>();
    if (cluster == null) {
      shards.forEach(s -> missing.add(collection + "/" + s));
      return out;
    }
    Map<String, Integer> attempt = new LinkedHashMap<>();
    shards.forEach(s -> attempt.put(s, 0));
    while (!attempt.isEmpty()) {
      // group pending shards by the replica each is to try next
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
      for (Map.Entry<ClusterConfig.Node, List<String>> g : byNode.entrySet()) {
        try {
          SearchResponse r = stub(g.getKey()).searchShards(SearchShardsRequest.newBuilder()
              .setSearch(Protos.toProto(q)).setCollection(collection).addAllShards(g.getValue()).build());
          out.add(Protos.fromResponse(r, q.heads(), q.queries(), q.k(), q.headDim()));
          g.getValue().forEach(attempt::remove);
        } catch (StatusRuntimeException e) {
          switch (e.getStatus().getCode()) {
            case UNAVAILABLE:
            case DEADLINE_EXCEEDED:
            case CANCELLED:
            case INTERNAL:
            case UNKNOWN:
              LOG.warn("node {} ({}) failed for {} shards {}: {}; trying other replicas", g.getKey().id,
                  g.getKey().address, collection, g.getValue(), e.getStatus());
              g.getValue().forEach(s -> attempt.merge(s, 1, Integer::sum));
              break;
            default:
              // the request itself is at fault: every replica would say the same
              throw new RequestException(kind(e), e.getStatus().getDescription());
          }
        } catch (IllegalStateException e) {
          LOG.warn("node {} answered badly: {}; trying other replicas", g.getKey().id, e.getMessage());
          g.getValue().forEach(s -> attempt.merge(s, 1, Integer::sum));
        }
      }
    }
    return out;
  }

  private static RequestException.Kind kind(StatusRuntimeException e) {
    switch (e.getStatus().getCode()) {
      case NOT_FOUND: return RequestException.Kind.NOT_FOUND;
      case RESOURCE_EXHAUSTED: return RequestException.Kind.RESOURCE_EXHAUSTED;
      case FAILED_PRECONDITION: return RequestException.Kind.FAILED_PRECONDITION;
      default: return RequestException.Kind.INVALID_ARGUMENT;
    }
  }

  private MemoryGrpc.MemoryBlockingStub stub(ClusterConfig.Node node) {
    ManagedChannel ch = channels.computeIfAbsent(node.address, a -> NettyChannelBuilder.forTarget(a).usePlaintext()
        .maxInboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes())).build());
    return MemoryGrpc.newBlockingStub(ch).withDeadlineAfter(config.remoteDeadlineMs, TimeUnit.MILLISECONDS)
        .withMaxOutboundMessageSize((int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes()));
  }

  @Override
  public void close() {
    for (ManagedChannel ch : channels.values()) {
      ch.shutdownNow();
    }
  }
}
