package io.longmem.memory.security;

import io.grpc.Context;
import java.util.EnumSet;
import java.util.Set;

/**
 * Who makes a call: the name of the token it presented and its roles, put in the gRPC {@link
 * Context} by {@link AuthInterceptor}. Without authentication every call is {@link #ANONYMOUS}.
 */
public record Caller(String name, Set<Role> roles) {
  /** The caller of a node without a tokens file (and of an in-process node): may do everything. */
  public static final Caller ANONYMOUS = new Caller("", EnumSet.allOf(Role.class));
  static final Context.Key<Caller> KEY = Context.key("longmem-caller");

  public Caller {
    roles = Set.copyOf(roles);
  }

  /** The caller of the call this thread serves. */
  public static Caller current() {
    Caller c = KEY.get();
    return c != null ? c : ANONYMOUS;
  }
}
