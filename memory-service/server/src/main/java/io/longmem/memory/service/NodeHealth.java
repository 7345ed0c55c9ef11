package io.longmem.memory.service;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether each other node is up, so that searches go to a live replica first instead of waiting
 * on a dead one again and again. A node is down after a call to it failed as a node fails
 * (UNAVAILABLE, connect failure, its own deadline) or after a failed grpc.health.v1 check; every
 * node is checked each interval (deadline: half of it) and a down one is back once a check
 * answers SERVING. With an interval of 0 nothing is tracked: every node counts as up.
 */
final class NodeHealth {
  private static final Logger LOG = LoggerFactory.getLogger(NodeHealth.class);
  private final long intervalMs;
  private final Function<ClusterConfig.Node, ManagedChannel> channels;
  private final Map<String, ClusterConfig.Node> nodes = new ConcurrentHashMap<>();
  /** ids of the nodes down now */
  private final Map<String, Boolean> down = new ConcurrentHashMap<>();

  NodeHealth(long intervalMs, Function<ClusterConfig.Node, ManagedChannel> channels) {
    this.intervalMs = intervalMs;
    this.channels = channels;
  }

  /** Checks these nodes every interval on {@code timer} (nothing when tracking is off). */
  void watch(Collection<ClusterConfig.Node> watched, ScheduledExecutorService timer) {
    if (intervalMs <= 0) {
      return;
    }
    watched.forEach(n -> nodes.put(n.id, n));
    timer.scheduleWithFixedDelay(this::checkAll, intervalMs, intervalMs, TimeUnit.MILLISECONDS);
  }

  boolean up(ClusterConfig.Node n) {
    return !down.containsKey(n.id);
  }

  /** The replicas, up ones first, each side in the given order (a down one is still tried last). */
  List<ClusterConfig.Node> order(List<ClusterConfig.Node> replicas) {
    List<ClusterConfig.Node> out = new ArrayList<>(replicas.size());
    replicas.stream().filter(this::up).forEach(out::add);
    replicas.stream().filter(n -> !up(n)).forEach(out::add);
    return out;
  }

  /** A call to {@code n} answered. */
  void answered(ClusterConfig.Node n) {
    up(n, "it answered a search");
  }

  /**
   * A call to {@code n} failed with {@code s}; {@code callerGone}: the search's caller had gone
   * (its cancellation or deadline, not the node's fault).
   */
  void failed(ClusterConfig.Node n, Status s, boolean callerGone) {
    if (intervalMs <= 0 || callerGone) {
      return;
    }
    if (s.getCode() == Status.Code.UNAVAILABLE || s.getCode() == Status.Code.DEADLINE_EXCEEDED) {
      down(n, "a search failed: " + s.getCode() + (s.getDescription() != null ? " " + s.getDescription() : ""));
    }
  }

  private void up(ClusterConfig.Node n, String why) {
    if (down.remove(n.id) != null) {
      LOG.info("node {} ({}) is up again: {}", n.id, n.address, why);
    }
  }

  private void down(ClusterConfig.Node n, String why) {
    if (down.put(n.id, Boolean.TRUE) == null) {
      LOG.warn("node {} ({}) is down: {}; tried last until a health check answers", n.id, n.address, why);
    }
  }

  private void checkAll() {
    for (ClusterConfig.Node n : nodes.values()) {
      try {
        check(n);
      } catch (RuntimeException e) { // the channel is closing: the node is shutting down
        LOG.debug("health check of {} not sent: {}", n.id, e.toString());
      }
    }
  }

  private void check(ClusterConfig.Node n) {
    ManagedChannel ch = channels.apply(n);
    if (!up(n)) {
      ch.resetConnectBackoff(); // a restarted node is reached now, not after the channel's backoff
    }
    HealthGrpc.newStub(ch).withDeadlineAfter(Math.max(1, intervalMs / 2), TimeUnit.MILLISECONDS)
        .check(HealthCheckRequest.getDefaultInstance(), new StreamObserver<>() {
          @Override
          public void onNext(HealthCheckResponse r) {
            if (r.getStatus() == HealthCheckResponse.ServingStatus.SERVING) {
              up(n, "its health check answered");
            } else {
              down(n, "its health check answered " + r.getStatus());
            }
          }

          @Override
          public void onError(Throwable t) {
            down(n, "its health check failed: " + Status.fromThrowable(t).getCode());
          }

          @Override
          public void onCompleted() {}
        });
  }
}
