package io.longmem.memory.api;

import io.longmem.io.InputException;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.MemoryGrpc;
import java.net.URI;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A channel to a memory node: a service at {@code grpc://HOST:PORT} or {@code grpcs://HOST:PORT}
 * (TLS, optionally a client certificate and a bearer token), or a node in this process
 * reached through gRPC's in-process transport, so both answer through the same client code.
 */
public final class MemoryEndpoint implements AutoCloseable {
  /** Largest answer accepted (a prefill chunk's top-k pairs with keys and values). */
  public static final int MAX_MESSAGE_BYTES = 1 << 30;

  private final String description;
  private final ManagedChannel channel;
  private final AutoCloseable inProcess;
  private final BearerToken token;

  private MemoryEndpoint(String description, ManagedChannel channel, AutoCloseable inProcess, BearerToken token) {
    this.description = description;
    this.channel = channel;
    this.inProcess = inProcess;
    this.token = token;
  }

  /** A memory service on the network, {@code grpc://HOST:PORT}, plaintext and without a token. */
  public static MemoryEndpoint remote(String uri) {
    return remote(uri, ClientSecurity.NONE);
  }

  /**
   * A memory service on the network: {@code grpc://HOST:PORT} (plaintext) or {@code
   * grpcs://HOST:PORT} (TLS: the node's certificate checked against {@code security}'s CA or the
   * JVM's roots, with a client certificate where given), sending {@code security}'s bearer token
   * on every call where it has one.
   */
  public static MemoryEndpoint remote(String uri, ClientSecurity security) {
    if ("local".equals(uri)) {
      throw new InputException("--memory local is a node in this process: the command line starts it");
    }
    URI u;
    try {
      u = URI.create(uri);
    } catch (IllegalArgumentException e) {
      throw new InputException("--memory " + uri + " is not grpc://HOST:PORT or grpcs://HOST:PORT");
    }
    boolean tls = "grpcs".equals(u.getScheme());
    if (!(tls || "grpc".equals(u.getScheme())) || u.getHost() == null || u.getPort() <= 0) {
      throw new InputException("--memory " + uri + " is not grpc://HOST:PORT, grpcs://HOST:PORT (TLS) or 'local'");
    }
    if (!tls && security.hasTlsFiles()) {
      throw new InputException("--memory " + uri + ": TLS files given for a plaintext grpc:// address (use grpcs://)");
    }
    NettyChannelBuilder b;
    try {
      b = tls ? NettyChannelBuilder.forAddress(u.getHost(), u.getPort(), security.tls())
          : NettyChannelBuilder.forAddress(u.getHost(), u.getPort()).usePlaintext();
    } catch (IllegalArgumentException e) { // a CA, certificate or key that is not PEM
      throw new InputException("--memory " + uri + ": unusable TLS files: " + e.getMessage());
    }
    ManagedChannel ch = b.maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
    return new MemoryEndpoint((tls ? "TLS " : "") + "memory service at " + u.getHost() + ":" + u.getPort(), ch, null,
        security.token());
  }

  /**
   * A node in this process, reached by name through gRPC's in-process transport (no sockets);
   * {@code owner} (the node) is closed with the endpoint. The server module makes such nodes.
   */
  public static MemoryEndpoint inProcess(String name, String description, AutoCloseable owner) {
    ManagedChannel ch = InProcessChannelBuilder.forName(name).directExecutor().maxInboundMessageSize(MAX_MESSAGE_BYTES)
        .build();
    return new MemoryEndpoint(description, ch, owner, null);
  }

  /** The documents of a collection the endpoint serves. */
  public List<String> documents(String collection) {
    var all = stub().withDeadlineAfter(30, TimeUnit.SECONDS)
        .listCollections(io.longmem.memory.grpc.ListCollectionsRequest.getDefaultInstance()).getCollectionsList();
    return all.stream().filter(c -> c.getName().equals(collection)).findFirst()
        .orElseThrow(() -> new MemoryRequestException("the " + this + " has no collection '" + collection + "'"))
        .getDocumentsList();
  }

  /** A blocking stub on this endpoint (benchmarks and tools; the memory backend wraps it). */
  public MemoryGrpc.MemoryBlockingStub stub() {
    MemoryGrpc.MemoryBlockingStub stub = MemoryGrpc.newBlockingStub(channel);
    return token == null ? stub : stub.withCallCredentials(token);
  }

  @Override
  public String toString() {
    return description;
  }

  @Override
  public void close() {
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
    if (inProcess != null) {
      try {
        inProcess.close();
      } catch (Exception e) {
        throw new IllegalStateException("closing the " + description + ": " + e.getMessage(), e);
      }
    }
  }
}
