package io.longmem.memory.service;

import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.longmem.memory.grpc.MemoryGrpc;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A memory node on the network: the Memory service, grpc.health.v1 and server reflection, bound
 * to loopback unless configured otherwise, and its Prometheus endpoint where configured. Closing
 * it drains: calls in flight finish (up to {@code shutdown_grace_ms}), new ones are refused.
 */
public final class MemoryServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryServer.class);
  private final MemoryNode node;
  private final Server server;
  private final HealthStatusManager health;
  private final long graceMs;
  private int metricsPort = -1;
  private boolean closed;

  private MemoryServer(MemoryNode node, Server server, HealthStatusManager health, long graceMs) {
    this.node = node;
    this.server = server;
    this.health = health;
    this.graceMs = graceMs;
  }

  public static MemoryServer start(ServiceConfig config) throws IOException {
    return start(config, NettyServerBuilder.forAddress(new InetSocketAddress(config.bind, config.port)));
  }

  /**
   * A node inside this process, reached through {@code InProcessChannelBuilder.forName(name)}: the
   * same service and answers as over the network, without sockets or serialization.
   */
  public static MemoryServer startInProcess(ServiceConfig config, String name) throws IOException {
    return start(config, io.grpc.inprocess.InProcessServerBuilder.forName(name).directExecutor());
  }

  private static MemoryServer start(ServiceConfig config, io.grpc.ServerBuilder<?> builder) throws IOException {
    MemoryNode node = new MemoryNode(config);
    int max = (int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes());
    MemoryServer s = null;
    try {
      HealthStatusManager health = new HealthStatusManager();
      Server server = builder
          .addService(new MemoryGrpcService(node))
          .addService(health.getHealthService())
          .addService(ProtoReflectionServiceV1.newInstance())
          .intercept(new MetricsInterceptor(node.metrics()))
          .maxInboundMessageSize(max)
          .build();
      s = new MemoryServer(node, server, health, config.shutdownGraceMs);
      server.start();
      if (config.metricsOn()) {
        String bind = config.metricsBind != null ? config.metricsBind : config.bind;
        s.metricsPort = node.metrics().serve(bind, config.metricsPort);
        LOG.info("memory node {} metrics on http://{}:{}/metrics", config.nodeId, bind, s.metricsPort);
      }
      health.setStatus("", ServingStatus.SERVING);
      health.setStatus(MemoryGrpc.SERVICE_NAME, ServingStatus.SERVING);
      LOG.info("memory node {} serving {} collection(s) on {}", config.nodeId, node.collections().size(),
          server.getPort() >= 0 ? config.bind + ":" + server.getPort() : "an in-process channel");
      return s;
    } catch (IOException | RuntimeException e) {
      if (s != null) {
        s.server.shutdownNow();
      }
      node.metrics().close();
      node.close();
      throw e;
    }
  }

  public int port() {
    return server.getPort();
  }

  /** The port of the metrics endpoint, -1 if none. */
  public int metricsPort() {
    return metricsPort;
  }

  public MemoryNode node() {
    return node;
  }

  public void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }

  /**
   * Drains and stops the node: health says NOT_SERVING, the port closes (new calls are refused
   * UNAVAILABLE), calls in flight get up to {@code shutdown_grace_ms} to finish and are then
   * cancelled. Returns as soon as the last call is done. Calling it again waits for the first.
   */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    health.enterTerminalState();
    server.shutdown();
    long t0 = System.nanoTime();
    try {
      if (!server.awaitTermination(graceMs, TimeUnit.MILLISECONDS)) {
        LOG.warn("calls still in flight after shutdown_grace_ms ({} ms): cancelling them", graceMs);
        server.shutdownNow();
        server.awaitTermination(1, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      server.shutdownNow();
      Thread.currentThread().interrupt();
    }
    LOG.debug("drained in {} ms", (System.nanoTime() - t0) / 1_000_000);
    node.metrics().close();
    node.close();
  }
}
