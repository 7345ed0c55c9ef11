package io.longmem.retrieve;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Where a worker's memory lives: a memory service at {@code grpc://HOST:PORT}, or {@code local}: a
 * memory node inside the worker over collection directories (FAISS in process), reached through
 * gRPC's in-process transport, so both answer through the same client code.
 */
public final class MemoryEndpoint implements AutoCloseable {
  /** Largest answer accepted (a prefill chunk's top-k pairs with keys and values). */
  static final int MAX_MESSAGE_BYTES = 1 << 30;

  private final String description;
  private final ManagedChannel channel;
  private final MemoryServer inProcess;

  private MemoryEndpoint(String description, ManagedChannel channel, MemoryServer inProcess) {
    this.description = description;
    this.channel = channel;
    this.inProcess = inProcess;
  }

  /** A memory service on the network, {@code grpc://HOST:PORT}. */
  public static MemoryEndpoint remote(String uri) {
    URI u;
    try {
      u = URI.create(uri);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("--memory " + uri + " is not grpc://HOST:PORT");
    }
    if (!"grpc".equals(u.getScheme()) || u.getHost() == null || u.getPort() <= 0) {
      throw new IllegalArgumentException("--memory " + uri + " is not grpc://HOST:PORT (or 'local')");
    }
    ManagedChannel ch = NettyChannelBuilder.forAddress(u.getHost(), u.getPort()).usePlaintext()
        .maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
    return new MemoryEndpoint("memory service at " + u.getHost() + ":" + u.getPort(), ch, null);
  }

  /** A memory node in this process serving these collections (name -> directory). */
  public static MemoryEndpoint local(Map<String, Path> collections, String modelFingerprint) throws IOException {
    ServiceConfig c = new ServiceConfig();
    collections.forEach((name, dir) -> c.collections.put(name, dir.toAbsolutePath().toString()));
    c.expectedFingerprint = modelFingerprint;
    c.maxMessageMb = MAX_MESSAGE_BYTES >> 20;
    String name = "longmem-worker-" + java.util.UUID.randomUUID();
    MemoryServer server = MemoryServer.startInProcess(c, name);
    if (!server.node().refused().isEmpty()) {
      String why = server.node().refused().toString();
      server.close();
      throw new IllegalArgumentException("cannot load collection(s): " + why);
    }
    ManagedChannel ch = InProcessChannelBuilder.forName(name).directExecutor().maxInboundMessageSize(MAX_MESSAGE_BYTES)
        .build();
    return new MemoryEndpoint("in-process memory over " + collections.keySet(), ch, server);
  }

  /** {@code grpc://HOST:PORT} or {@code local} (then {@code collections} are directories). */
  public static MemoryEndpoint open(String memory, Map<String, Path> collections, String modelFingerprint)
      throws IOException {
    return "local".equals(memory) ? local(collections, modelFingerprint) : remote(memory);
  }

  /** The documents of a collection the endpoint serves. */
  public List<String> documents(String collection) {
    var all = stub().withDeadlineAfter(30, TimeUnit.SECONDS)
        .listCollections(io.longmem.memory.grpc.ListCollectionsRequest.getDefaultInstance()).getCollectionsList();
    return all.stream().filter(c -> c.getName().equals(collection)).findFirst()
        .orElseThrow(() -> new IllegalArgumentException("the " + this + " has no collection '" + collection + "'"))
        .getDocumentsList();
  }

  /** A blocking stub on this endpoint (benchmarks and tools; the memory backend wraps it). */
  public MemoryGrpc.MemoryBlockingStub stub() {
    return MemoryGrpc.newBlockingStub(channel);
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
      inProcess.close();
    }
  }
}
