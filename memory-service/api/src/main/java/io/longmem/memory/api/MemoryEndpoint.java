package io.longmem.memory.api;

import io.longmem.io.InputException;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.grpc.MemoryGrpc;
import java.net.InetSocketAddress;
import java.util.ArrayList;
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

  /**
   * A memory service on the network: {@code grpc://HOST:PORT}, or several nodes of one cluster,
   * {@code grpc://H1:P1,H2:P2,...[?lb=pick_first|round_robin][&hedge_ms=N]}. With several, Search
   * and ListCollections that fail UNAVAILABLE are sent again to another node; {@code lb} picks the
   * node of each call (pick_first, the default: one node at a time, so a session stays on its node;
   * round_robin: spread over all) and {@code hedge_ms} sends a Search not answered after that long
   * to the next node as well (the first answer wins). Plaintext, without a token.
   */
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
    boolean tls = uri != null && uri.startsWith("grpcs://");
    if (uri == null || !(tls || uri.startsWith("grpc://"))) {
      throw new InputException("--memory " + uri
          + " is not grpc://HOST:PORT[,HOST:PORT...], grpcs://... (TLS) or 'local'");
    }
    if (!tls && security.hasTlsFiles()) {
      throw new InputException("--memory " + uri + ": TLS files given for a plaintext grpc:// address (use grpcs://)");
    }
    String rest = uri.substring(tls ? "grpcs://".length() : "grpc://".length());
    String options = "";
    int question = rest.indexOf('?');
    if (question >= 0) {
      options = rest.substring(question + 1);
      rest = rest.substring(0, question);
    }
    List<InetSocketAddress> addresses = new ArrayList<>();
    for (String a : rest.split(",", -1)) {
      addresses.add(address(uri, a));
    }
    String lb = "pick_first";
    long hedgeMs = 0;
    for (String o : options.isEmpty() ? new String[0] : options.split("&")) {
      String[] kv = o.split("=", 2);
      if (kv.length == 2 && kv[0].equals("lb") && (kv[1].equals("pick_first") || kv[1].equals("round_robin"))) {
        lb = kv[1];
      } else if (kv.length == 2 && kv[0].equals("hedge_ms") && kv[1].matches("[0-9]{1,7}")) {
        hedgeMs = Long.parseLong(kv[1]);
      } else {
        throw new InputException("--memory " + uri + ": unknown option '" + o
            + "' (lb=pick_first|round_robin, hedge_ms=MILLISECONDS)");
      }
    }
    boolean one = addresses.size() == 1 && options.isEmpty();
    NettyChannelBuilder b;
    try {
      if (one) {
        InetSocketAddress a = addresses.get(0);
        b = tls ? NettyChannelBuilder.forAddress(a.getHostString(), a.getPort(), security.tls())
            : NettyChannelBuilder.forAddress(a.getHostString(), a.getPort()).usePlaintext();
      } else {
        // each node's certificate is checked against its own host name (StaticAddresses sets it per address)
        String target = StaticAddresses.SCHEME + ":///nodes";
        b = tls ? NettyChannelBuilder.forTarget(target, security.tls()) : NettyChannelBuilder.forTarget(target).usePlaintext();
        b.nameResolverFactory(new StaticAddresses(addresses).factory())
            .defaultServiceConfig(ClientRetries.serviceConfig(lb, addresses.size(), hedgeMs)).enableRetry()
            .perRpcBufferLimit(ClientRetries.BUFFER_BYTES).retryBufferSize(4 * ClientRetries.BUFFER_BYTES);
      }
    } catch (IllegalArgumentException e) { // a CA, certificate or key that is not PEM
      throw new InputException("--memory " + uri + ": unusable TLS files: " + e.getMessage());
    }
    ManagedChannel ch = b.maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
    String where = one ? addresses.get(0).getHostString() + ":" + addresses.get(0).getPort() : rest + " (" + lb + ")";
    return new MemoryEndpoint((tls ? "TLS " : "") + "memory service at " + where, ch, null, security.token());
  }

  private static InetSocketAddress address(String uri, String a) {
    int colon = a.lastIndexOf(':');
    String host = colon > 0 ? a.substring(0, colon) : "";
    String port = colon > 0 ? a.substring(colon + 1) : "";
    if (host.isEmpty() || !port.matches("[0-9]{1,5}") || Integer.parseInt(port) < 1
        || Integer.parseInt(port) > 65535) {
      throw new InputException("--memory " + uri + ": '" + a + "' is not HOST:PORT (port 1..65535)");
    }
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    return InetSocketAddress.createUnresolved(host, Integer.parseInt(port));
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
