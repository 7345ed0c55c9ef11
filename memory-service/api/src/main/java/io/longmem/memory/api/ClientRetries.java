package io.longmem.memory.api;

import io.longmem.memory.grpc.MemoryGrpc;
import java.util.List;
import java.util.Map;

/**
 * The gRPC service config of a client of several nodes: their load balancing, and Search and
 * ListCollections sent again to another node on UNAVAILABLE (retried, or hedged after a delay).
 * The other calls are not retried: a session lives on one node.
 */
final class ClientRetries {
  /** Largest request kept for a retry (a bigger one is sent once). */
  static final long BUFFER_BYTES = 64L << 20;

  private ClientRetries() {}

  static Map<String, Object> serviceConfig(String lb, int nodes, long hedgeMs) {
    double attempts = Math.min(5, nodes + 1); // gRPC's cap is 5
    List<Map<String, Object>> names = List.of(
        Map.of("service", MemoryGrpc.SERVICE_NAME, "method", "Search"),
        Map.of("service", MemoryGrpc.SERVICE_NAME, "method", "ListCollections"));
    Map<String, Object> policy = hedgeMs > 0
        ? Map.of("hedgingPolicy", Map.of("maxAttempts", attempts, "hedgingDelay", seconds(hedgeMs),
            "nonFatalStatusCodes", List.of("UNAVAILABLE")))
        : Map.of("retryPolicy", Map.of("maxAttempts", attempts, "initialBackoff", "0.02s", "maxBackoff", "0.2s",
            "backoffMultiplier", 2.0, "retryableStatusCodes", List.of("UNAVAILABLE")));
    Map<String, Object> method = new java.util.HashMap<>(policy);
    method.put("name", names);
    return Map.of("loadBalancingConfig", List.of(Map.of(lb, Map.of())), "methodConfig", List.of(method));
  }

  private static String seconds(long ms) {
    return String.format(java.util.Locale.ROOT, "%.3fs", ms / 1000.0);
  }
}
