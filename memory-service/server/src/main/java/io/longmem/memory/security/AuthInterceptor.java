package io.longmem.memory.security;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.longmem.memory.api.BearerToken;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Bearer-token authentication of the Memory service: a call without {@code authorization: Bearer
 * <token>} or with a token the node does not know is refused UNAUTHENTICATED, one whose token
 * lacks the method's role ({@link MethodRoles}) PERMISSION_DENIED; otherwise its {@link Caller}
 * goes into the call's context. Messages never show the token. Health and reflection are not
 * behind it (the server intercepts the Memory service alone).
 */
public final class AuthInterceptor implements ServerInterceptor {
  private static final Logger LOG = LoggerFactory.getLogger(AuthInterceptor.class);
  private static final String BEARER = "Bearer ";
  private final TokenStore tokens;

  public AuthInterceptor(TokenStore tokens) {
    this.tokens = tokens;
  }

  @Override
  public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers,
      ServerCallHandler<Q, A> next) {
    String method = call.getMethodDescriptor().getFullMethodName();
    Role needed = MethodRoles.required(method);
    String header = headers.get(BearerToken.AUTHORIZATION);
    if (header == null) {
      return refuse(call, Status.UNAUTHENTICATED, "no bearer token: send the metadata 'authorization: Bearer <token>'");
    }
    if (!header.regionMatches(true, 0, BEARER, 0, BEARER.length())) {
      return refuse(call, Status.UNAUTHENTICATED, "the authorization metadata is not 'Bearer <token>'");
    }
    Optional<Caller> caller = tokens.find(header.substring(BEARER.length()).strip());
    if (caller.isEmpty()) {
      return refuse(call, Status.UNAUTHENTICATED, "the bearer token is not one this node accepts");
    }
    if (!caller.get().roles().contains(needed)) {
      return refuse(call, Status.PERMISSION_DENIED, "token '" + caller.get().name() + "' lacks the role '"
          + needed.key() + "' that " + call.getMethodDescriptor().getBareMethodName() + " needs");
    }
    return Contexts.interceptCall(Context.current().withValue(Caller.KEY, caller.get()), call, headers, next);
  }

  private static <Q, A> ServerCall.Listener<Q> refuse(ServerCall<Q, A> call, Status status, String why) {
    LOG.debug("{} from {} refused: {}", call.getMethodDescriptor().getBareMethodName(),
        call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR), why);
    call.close(status.withDescription(why), new Metadata());
    return new ServerCall.Listener<>() {};
  }
}
