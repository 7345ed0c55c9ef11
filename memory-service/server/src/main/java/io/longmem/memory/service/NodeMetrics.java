package io.longmem.memory.service;

import io.grpc.Status;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.util.function.DoubleSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A node's Prometheus metrics, in a registry of its own (several nodes may share a JVM): calls by
 * method and status ({@link MetricsInterceptor}), the parts of a search, and gauges read at scrape
 * time from the node. Served over HTTP only when {@code metrics_port} is set; JVM and process
 * metrics (heap, GC, threads, resident memory) are registered then too.
 */
public final class NodeMetrics implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(NodeMetrics.class);
  /** Latency buckets in seconds: 100 us (a small Flat search) to 30 s (a deadline). */
  private static final double[] SECONDS = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25, 0.5, 1, 2.5, 5, 10, 30};

  private final PrometheusRegistry registry = new PrometheusRegistry();
  private final Counter started;
  private final Counter handled;
  private final Histogram handling;
  private final Histogram searchPart;
  /** the parts' series, looked up once: FAISS is timed per shard and head */
  private final DistributionDataPoint faiss;
  private final DistributionDataPoint rescore;
  private final DistributionDataPoint answer;
  private final Counter rescored;
  private final Counter answerBytes;
  private final Counter remoteCalls;
  private final Counter failovers;
  private HTTPServer http;

  public NodeMetrics() {
    started = Counter.builder().name("grpc_server_started_total").help("Calls started, by service and method")
        .labelNames("grpc_service", "grpc_method").register(registry);
    handled = Counter.builder().name("grpc_server_handled_total")
        .help("Calls finished, by service, method and status code").labelNames("grpc_service", "grpc_method", "grpc_code")
        .register(registry);
    handling = Histogram.builder().name("grpc_server_handling_seconds")
        .help("Time from a call's start to its status, by service and method").classicOnly()
        .classicUpperBounds(SECONDS).labelNames("grpc_service", "grpc_method").register(registry);
    searchPart = Histogram.builder().name("longmem_search_part_seconds")
        .help("Parts of searches: faiss (one index search: one shard, one head), rescore (one head's "
            + "candidate pool), answer (writing one answer)")
        .classicOnly().classicUpperBounds(SECONDS).labelNames("part").register(registry);
    rescored = Counter.builder().name("longmem_rescored_candidates_total")
        .help("Candidates re-scored exactly with the stored keys (refine x k per query and head)").register(registry);
    answerBytes = Counter.builder().name("longmem_answer_bytes_total")
        .help("Bytes of the search answers written (Search and SearchShards)").register(registry);
    remoteCalls = Counter.builder().name("longmem_remote_calls_total")
        .help("Calls to other nodes' shards, by node and outcome (ok, unavailable, refused)")
        .labelNames("node", "outcome").register(registry);
    failovers = Counter.builder().name("longmem_remote_failovers_total")
        .help("Shards whose replica failed, each then sent to its next replica (if any)").register(registry);
    faiss = searchPart.labelValues("faiss");
    rescore = searchPart.labelValues("rescore");
    answer = searchPart.labelValues("answer");
    rescored.inc(0);
    answerBytes.inc(0);
    failovers.inc(0);
  }

  /** The registry (tests read it; the endpoint serves it). */
  public PrometheusRegistry registry() {
    return registry;
  }

  /** A gauge read when scraped. */
  void gauge(String name, String help, DoubleSupplier value) {
    GaugeWithCallback.builder().name(name).help(help).callback(cb -> cb.call(value.getAsDouble())).register(registry);
  }

  /**
   * Serves /metrics on {@code bind:port} (-1: a free port) with JVM and process metrics added.
   *
   * @return the port
   */
  int serve(String bind, int port) throws IOException {
    JvmMetrics.builder().register(registry);
    http = HTTPServer.builder().hostname(bind).port(Math.max(0, port)).registry(registry).buildAndStart();
    return http.getPort();
  }

  void callStarted(String service, String method) {
    started.labelValues(service, method).inc();
  }

  void callHandled(String service, String method, Status.Code code, long nanos) {
    handled.labelValues(service, method, code.name()).inc();
    handling.labelValues(service, method).observe(nanos / 1e9);
  }

  /** One FAISS index search (one shard, one head) that took {@code nanos}. */
  void faiss(long nanos) {
    faiss.observe(nanos / 1e9);
  }

  /** One head's pool of {@code candidates} re-scored in {@code nanos}. */
  void rescored(long candidates, long nanos) {
    rescore.observe(nanos / 1e9);
    rescored.inc(candidates);
  }

  /** One answer of {@code bytes} written in {@code nanos}. */
  void answer(long bytes, long nanos) {
    answer.observe(nanos / 1e9);
    answerBytes.inc(bytes);
  }

  void remoteCall(String node, String outcome) {
    remoteCalls.labelValues(node, outcome).inc();
  }

  void failovers(int shards) {
    failovers.inc(shards);
  }

  @Override
  public void close() {
    if (http != null) {
      http.close();
      http = null;
      LOG.debug("metrics endpoint closed");
    }
  }
}
