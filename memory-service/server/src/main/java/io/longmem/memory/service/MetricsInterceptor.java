package io.longmem.memory.service;

import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Counts every call a node serves by method and status code and times it, from its start to its
 * status (a call the client cancels counts as CANCELLED). The count is taken before the status is
 * sent, so a client that has its answer finds it in the next scrape.
 */
final class MetricsInterceptor implements ServerInterceptor {
  private final NodeMetrics metrics;

  MetricsInterceptor(NodeMetrics metrics) {
    this.metrics = metrics;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
      ServerCallHandler<Q, R> next) {
    MethodDescriptor<Q, R> m = call.getMethodDescriptor();
    String service = String.valueOf(m.getServiceName());
    String method = String.valueOf(m.getBareMethodName());
    long t0 = System.nanoTime();
    AtomicBoolean done = new AtomicBoolean();
    metrics.callStarted(service, method);
    ServerCall<Q, R> counted = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
      @Override
      public void close(Status status, Metadata trailers) {
        if (done.compareAndSet(false, true)) {
          metrics.callHandled(service, method, status.getCode(), System.nanoTime() - t0);
        }
        super.close(status, trailers);
      }
    };
    return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(counted, headers)) {
      @Override
      public void onCancel() {
        if (done.compareAndSet(false, true)) {
          metrics.callHandled(service, method, Status.Code.CANCELLED, System.nanoTime() - t0);
        }
        super.onCancel();
      }
    };
  }
}
