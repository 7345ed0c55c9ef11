package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Server reflection in both versions (v1, and v1alpha that older grpcurl builds speak) lists the
 * Memory service and can describe it, on a node with TLS and tokens, without a token.
 */
class ReflectionTest {
  @Test
  void bothVersionsListAndDescribeTheMemoryService(@TempDir Path tmp) throws Exception {
    TestCerts certs = TestCerts.make(tmp.resolve("certs"));
    ServiceConfig c = TestBooks.write(tmp.resolve("books")).config("local", null);
    c.tls.certChain = certs.cert("server").toString();
    c.tls.privateKey = certs.key("server").toString();
    c.auth.tokensFile = SecureNodes.tokensFile(tmp).toString();
    try (MemoryServer s = MemoryServer.start(c)) {
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", s.port(),
          SecureNodes.tls(certs.ca(), null, null)).build();
      try {
        List<String> v1 = servicesV1(ch);
        List<String> alpha = servicesV1Alpha(ch);
        for (List<String> names : List.of(v1, alpha)) {
          assertTrue(names.contains("longmem.memory.v1.Memory"), names.toString());
          assertTrue(names.contains("grpc.health.v1.Health"), names.toString());
        }
        assertTrue(alpha.contains("grpc.reflection.v1alpha.ServerReflection"), alpha.toString());
        assertTrue(describedV1Alpha(ch).contains("SearchShards"), "v1alpha describes the Memory service");
      } finally {
        ch.shutdownNow();
      }
    }
  }

  /** The services a node lists over reflection v1. */
  static List<String> servicesV1(ManagedChannel ch) throws Exception {
    CompletableFuture<List<String>> done = new CompletableFuture<>();
    StreamObserver<io.grpc.reflection.v1.ServerReflectionRequest> req = io.grpc.reflection.v1.ServerReflectionGrpc
        .newStub(ch).serverReflectionInfo(observer(done, r -> r.getListServicesResponse().getServiceList().stream()
            .map(io.grpc.reflection.v1.ServiceResponse::getName).toList()));
    req.onNext(io.grpc.reflection.v1.ServerReflectionRequest.newBuilder().setListServices("").build());
    try {
      return done.get(20, TimeUnit.SECONDS);
    } finally {
      req.onCompleted();
    }
  }

  /** The services a node lists over reflection v1alpha. */
  @SuppressWarnings("deprecation")
  static List<String> servicesV1Alpha(ManagedChannel ch) throws Exception {
    CompletableFuture<List<String>> done = new CompletableFuture<>();
    StreamObserver<io.grpc.reflection.v1alpha.ServerReflectionRequest> req = io.grpc.reflection.v1alpha
        .ServerReflectionGrpc.newStub(ch).serverReflectionInfo(observer(done, r -> r.getListServicesResponse()
            .getServiceList().stream().map(io.grpc.reflection.v1alpha.ServiceResponse::getName).toList()));
    req.onNext(io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder().setListServices("").build());
    try {
      return done.get(20, TimeUnit.SECONDS);
    } finally {
      req.onCompleted();
    }
  }

  /** The file that defines longmem.memory.v1.Memory, as v1alpha sends it (serialized descriptor bytes). */
  @SuppressWarnings("deprecation")
  static String describedV1Alpha(ManagedChannel ch) throws Exception {
    CompletableFuture<String> done = new CompletableFuture<>();
    StreamObserver<io.grpc.reflection.v1alpha.ServerReflectionRequest> req = io.grpc.reflection.v1alpha
        .ServerReflectionGrpc.newStub(ch).serverReflectionInfo(observer(done, r -> {
          StringBuilder b = new StringBuilder();
          r.getFileDescriptorResponse().getFileDescriptorProtoList().forEach(f -> b.append(f.toStringUtf8()));
          return b.toString();
        }));
    req.onNext(io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder()
        .setFileContainingSymbol("longmem.memory.v1.Memory").build());
    try {
      return done.get(20, TimeUnit.SECONDS);
    } finally {
      req.onCompleted();
    }
  }

  private static <R, T> StreamObserver<R> observer(CompletableFuture<T> done, java.util.function.Function<R, T> f) {
    return new StreamObserver<>() {
      @Override
      public void onNext(R r) {
        done.complete(f.apply(r));
      }

      @Override
      public void onError(Throwable t) {
        done.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {}
    };
  }
}
