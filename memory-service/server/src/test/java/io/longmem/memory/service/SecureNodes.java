package io.longmem.memory.service;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.TlsChannelCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.longmem.memory.api.BearerToken;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.security.TokenStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The security tests' fixtures: a tokens file of four callers (one per role, and one with
 * search and sessions as a model worker has), configs that use it, and clients with or without
 * TLS and a token.
 */
final class SecureNodes {
  static final String SEARCHER = "searcher-token-1f2e3d";
  static final String WORKER = "worker-token-4c5b6a";
  static final String OTHER_WORKER = "worker-token-978877";
  static final String ADMIN = "admin-token-665544";

  private SecureNodes() {}

  /** Writes tokens.json (SHA-256s only) into {@code dir}. */
  static Path tokensFile(Path dir) throws IOException {
    Path f = dir.resolve("tokens.json");
    Files.writeString(f, "{\"tokens\": ["
        + entry("searcher", SEARCHER, "\"search\"") + ","
        + entry("worker", WORKER, "\"search\", \"sessions\"") + ","
        + entry("other-worker", OTHER_WORKER, "\"search\", \"sessions\"") + ","
        + entry("admin", ADMIN, "\"admin\"") + "]}");
    return f;
  }

  private static String entry(String name, String token, String roles) {
    return "{\"name\": \"" + name + "\", \"roles\": [" + roles + "], \"sha256\": \"" + TokenStore.sha256Hex(token)
        + "\"}";
  }

  /** TLS that trusts {@code ca}, with a client certificate where {@code cert} is given. */
  static ChannelCredentials tls(Path ca, Path cert, Path key) throws IOException {
    TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder().trustManager(ca.toFile());
    if (cert != null) {
      b.keyManager(cert.toFile(), key.toFile());
    }
    return b.build();
  }

  static ChannelCredentials plaintext() {
    return InsecureChannelCredentials.create();
  }

  /** A stub on {@code port} over {@code creds}, sending {@code token} where not null. */
  static MemoryGrpc.MemoryBlockingStub client(int port, ChannelCredentials creds, String token,
      List<ManagedChannel> open) {
    ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", port, creds).build();
    open.add(ch);
    MemoryGrpc.MemoryBlockingStub stub = MemoryGrpc.newBlockingStub(ch).withDeadlineAfter(20, TimeUnit.SECONDS);
    return token == null ? stub : stub.withCallCredentials(BearerToken.of(token, "test token"));
  }
}
