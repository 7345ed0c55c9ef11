package io.longmem.memory.service;

import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.longmem.io.InputException;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.security.AuthInterceptor;
import io.longmem.memory.security.MethodRoles;
import io.longmem.memory.security.NodeSecurity;
import io.longmem.memory.security.TokenStore;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A memory node on the network: the Memory service (behind TLS and bearer tokens where
 * configured), grpc.health.v1 and server reflection (v1 and v1alpha, open to all), bound to
 * loopback unless configured otherwise, and its Prometheus endpoint where configured. Closing it
 * drains: calls in flight finish (up to {@code shutdown_grace_ms}), new ones are refused.
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

  /**
   * Starts a node on the network. Without TLS and tokens it binds loopback only: a node bound to
   * any other address must have both (an {@link InputException} saying what to configure).
   */
  public static MemoryServer start(ServiceConfig config) throws IOException {
    NodeSecurity security = config.security();
    if (!loopback(config.bind) && (security.serverCredentials() == null || security.tokens() == null)) {
      throw new InputException("bind " + config.bind + " is not a loopback address: a node reachable from other "
          + "machines needs TLS and tokens; set " + (security.serverCredentials() == null
          ? "tls.cert_chain and tls.private_key" + (security.tokens() == null ? " and " : "") : "")
          + (security.tokens() == null ? "auth.tokens_file" : "") + " in its configuration (or bind 127.0.0.1)");
    }
    InetSocketAddress address = new InetSocketAddress(config.bind, config.port);
    NettyServerBuilder builder;
    if (security.serverCredentials() == null) {
      builder = NettyServerBuilder.forAddress(address);
    } else {
      try {
        builder = NettyServerBuilder.forAddress(address, security.serverCredentials());
      } catch (IllegalArgumentException e) { // Netty could not use the key or certificates
        throw new InputException("tls.cert_chain " + config.tls.certChain + " / tls.private_key "
            + config.tls.privateKey + ": unusable (" + e.getMessage() + "; the key must be PEM PKCS#8 and match)");
      }
    }
    return start(config, builder);
  }

  /** Whether every address {@code bind} names is a loopback one. */
  static boolean loopback(String bind) {
    try {
      for (InetAddress a : InetAddress.getAllByName(bind)) {
        if (!a.isLoopbackAddress()) {
          return false;
        }
      }
      return true;
    } catch (UnknownHostException e) {
      throw new InputException("bind " + bind + ": unknown host");
    }
  }

  /**
   * A node inside this process, reached through {@code InProcessChannelBuilder.forName(name)}: the
   * same service and answers as over the network, without sockets or serialization.
   */
  public static MemoryServer startInProcess(ServiceConfig config, String name) throws IOException {
    return start(config, io.grpc.inprocess.InProcessServerBuilder.forName(name).directExecutor());
  }

  private static MemoryServer start(ServiceConfig config, io.grpc.ServerBuilder<?> builder) throws IOException {
    MethodRoles.verify();
    MemoryNode node = new MemoryNode(config);
    int max = (int) Math.min(Integer.MAX_VALUE, config.maxMessageBytes());
    MemoryServer s = null;
    try {
      HealthStatusManager health = new HealthStatusManager();
      TokenStore tokens = config.security().tokens();
      MemoryGrpcService memory = new MemoryGrpcService(node);
      Server server = builder
          .addService(tokens == null ? memory.bindService()
              : ServerInterceptors.intercept(memory, new AuthInterceptor(tokens)))
          .addService(health.getHealthService())
          .addService(ProtoReflectionServiceV1.newInstance())
          .addService(reflectionV1Alpha())
          .intercept(new MetricsInterceptor(node.metrics())) // every call, also those auth refuses
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
      LOG.info("memory node {} serving {} collection(s) on {} ({}, {})", config.nodeId, node.collections().size(),
          server.getPort() >= 0 ? config.bind + ":" + server.getPort() : "an in-process channel",
          config.security().serverCredentials() != null ? "TLS" + (config.tls.clientCa != null ? ", client certificates"
              : "") : "plaintext", tokens != null ? tokens.size() + " token(s)" : "no authentication");
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

  /** Reflection as older clients speak it (grpcurl before 1.8.8 knows only v1alpha). */
  @SuppressWarnings("deprecation")
  private static io.grpc.BindableService reflectionV1Alpha() {
    return io.grpc.protobuf.services.ProtoReflectionService.newInstance();
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
    LOG.info("memory node refusing new calls, finishing those in flight (up to {} ms)", graceMs);
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
