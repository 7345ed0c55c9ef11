package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * The status a call's failure maps to: exactly the request's own errors are the client's fault;
 * any other exception, whatever its type, is INTERNAL.
 */
class ErrorMappingTest {
  /** What a call answered: its value, or its status. */
  private static final class Answer<T> implements StreamObserver<T> {
    T value;
    Status status;
    boolean completed;

    @Override
    public void onNext(T v) {
      value = v;
    }

    @Override
    public void onError(Throwable t) {
      status = Status.fromThrowable(t);
    }

    @Override
    public void onCompleted() {
      completed = true;
    }
  }

  private static Status status(Supplier<String> body) {
    Answer<String> a = new Answer<>();
    MemoryGrpcService.answer(a, body);
    return a.status;
  }

  @Test
  void requestErrorsKeepTheirKindAndEverythingElseIsInternal() {
    for (RequestException.Kind kind : RequestException.Kind.values()) {
      Status s = status(() -> {
        throw new RequestException(kind, "because " + kind);
      });
      assertEquals(kind.name(), s.getCode().name());
      assertEquals("because " + kind, s.getDescription());
    }
    Status iae = status(() -> {
      throw new IllegalArgumentException("deep inside");
    });
    assertEquals(Status.Code.INTERNAL, iae.getCode(), "an IllegalArgumentException is no fault of the request");
    assertTrue(iae.getDescription().contains("deep inside"), iae.getDescription());
    assertEquals(Status.Code.INTERNAL, status(() -> {
      throw new IllegalStateException("x");
    }).getCode());
    assertEquals(Status.Code.INTERNAL, status(() -> {
      throw new ReplicaUnavailableException("n1", "down", null); // never meant to escape
    }).getCode());
  }

  @Test
  void anAnswerCompletes() {
    Answer<String> a = new Answer<>();
    MemoryGrpcService.answer(a, () -> "ok");
    assertEquals("ok", a.value);
    assertTrue(a.completed);
    assertNull(a.status);
  }
}
