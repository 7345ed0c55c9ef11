package io.longmem.memory.security;

import io.grpc.MethodDescriptor;
import io.longmem.memory.grpc.MemoryGrpc;
import java.util.HashMap;
import java.util.Map;

/**
 * The role each Memory method needs. Every method of the service must be listed: a method added
 * to the proto without a role here fails the node's start (and this class's test) instead of
 * being open to any token.
 */
public final class MethodRoles {
  private static final Map<String, Role> ROLES = new HashMap<>();

  static {
    ROLES.put(MemoryGrpc.getSearchMethod().getFullMethodName(), Role.SEARCH);
    ROLES.put(MemoryGrpc.getListCollectionsMethod().getFullMethodName(), Role.SEARCH);
    ROLES.put(MemoryGrpc.getCreateSessionMethod().getFullMethodName(), Role.SESSIONS);
    ROLES.put(MemoryGrpc.getAppendSessionMethod().getFullMethodName(), Role.SESSIONS);
    ROLES.put(MemoryGrpc.getDropSessionMethod().getFullMethodName(), Role.SESSIONS);
    ROLES.put(MemoryGrpc.getSearchShardsMethod().getFullMethodName(), Role.ADMIN);
    for (MethodDescriptor<?, ?> m : MemoryGrpc.getServiceDescriptor().getMethods()) {
      if (!ROLES.containsKey(m.getFullMethodName())) {
        throw new IllegalStateException(m.getFullMethodName() + " has no role in MethodRoles");
      }
    }
  }

  private MethodRoles() {}

  /** Fails (at class load) if a Memory method has no role; the server calls it at every start. */
  public static void verify() {
    // the check is the static initializer's
  }

  /** The role a method needs; a method of another service (none is intercepted) needs admin. */
  public static Role required(String fullMethodName) {
    return ROLES.getOrDefault(fullMethodName, Role.ADMIN);
  }
}
