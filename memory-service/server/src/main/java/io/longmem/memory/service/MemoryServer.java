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
 * to loopback unless configured otherwise.
 */
public final class MemoryServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryServer.class);
  private final MemoryNode node;
  private final Server server;
  private final HealthStatusManager health;

  private MemoryServer(MemoryNode node, Server server, HealthStatusManager health) {
    this.node = node;
    this.server = server;
    this.health = health;
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
          .maxInboundMessageSize(max)
          .build();
      s = new MemoryServer(node, server, health);
      server.start();
      health.setStatus("", ServingStatus.SERVING);
      health.setStatus(MemoryGrpc.SERVICE_NAME, ServingStatus.SERVING);
      LOG.info("memory node {} serving {} collection(s) on {}", config.nodeId, node.collections().size(),
          server.getPort() >= 0 ? config.bind + ":" + server.getPort() : "an in-process channel");
      return s;
    } catch (IOException | RuntimeException e) {
      node.close();
      throw e;
    }
  }

  public int port() {
    return server.getPort();
  }

  public MemoryNode node() {
    return node;
  }

  public void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }

  @Override
  public void close() {
    health.enterTerminalState();
    server.shutdown();
    try {
      if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
        server.shutdownNow();
      }
    } catch (InterruptedException e) {
      server.shutdownNow();
      Thread.currentThread().interrupt();
    }
    node.close();
  }
}
