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
 * A channel to a memory node: a service at {@code grpc://HOST:PORT}, or a node in this process
 * reached through gRPC's in-process transport, so both answer through the same client code.
 */
public final class MemoryEndpoint implements AutoCloseable {
  /** Largest answer accepted (a prefill chunk's top-k pairs with keys and values). */
  public static final int MAX_MESSAGE_BYTES = 1 << 30;

  private final String description;
  private final ManagedChannel channel;
  private final AutoCloseable inProcess;

  private MemoryEndpoint(String description, ManagedChannel channel, AutoCloseable inProcess) {
    this.description = description;
    this.channel = channel;
    this.inProcess = inProcess;
  }

  /**
   * A memory service on the network: {@code grpc://HOST:PORT}, or several nodes of one cluster,
   * {@code grpc://H1:P1,H2:P2,...[?lb=pick_first|round_robin][&hedge_ms=N]}. With several, Search
   * and ListCollections that fail UNAVAILABLE are sent again to another node; {@code lb} picks the
   * node of each call (pick_first, the default: one node at a time, so a session stays on its node;
   * round_robin: spread over all) and {@code hedge_ms} sends a Search not answered after that long
   * to the next node as well (the first answer wins).
   */
  public static MemoryEndpoint remote(String uri) {
    if ("local".equals(uri)) {
      throw new InputException("--memory local is a node in this process: the command line starts it");
    }
    if (uri == null || !uri.startsWith("grpc://")) {
      throw new InputException("--memory " + uri + " is not grpc://HOST:PORT[,HOST:PORT...] (or 'local')");
    }
    String rest = uri.substring("grpc://".length());
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
    if (addresses.size() == 1 && options.isEmpty()) {
      InetSocketAddress a = addresses.get(0);
      ManagedChannel ch = NettyChannelBuilder.forAddress(a.getHostString(), a.getPort()).usePlaintext()
          .maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
      return new MemoryEndpoint("memory service at " + a.getHostString() + ":" + a.getPort(), ch, null);
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
    ManagedChannel ch = NettyChannelBuilder.forTarget(StaticAddresses.SCHEME + ":///nodes")
        .nameResolverFactory(new StaticAddresses(addresses).factory())
        .defaultServiceConfig(ClientRetries.serviceConfig(lb, addresses.size(), hedgeMs)).enableRetry()
        .perRpcBufferLimit(ClientRetries.BUFFER_BYTES).retryBufferSize(4 * ClientRetries.BUFFER_BYTES)
        .usePlaintext().maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
    return new MemoryEndpoint("memory service at " + rest + " (" + lb + ")", ch, null);
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
    return new MemoryEndpoint(description, ch, owner);
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
      try {
        inProcess.close();
      } catch (Exception e) {
        throw new IllegalStateException("closing the " + description + ": " + e.getMessage(), e);
      }
    }
  }
}
