package io.longmem.memory.api;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.Status;
import io.longmem.io.InputException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Executor;

/**
 * A bearer token sent as {@code authorization: Bearer <token>} on every call of a channel (the
 * memory node's authentication). Its {@link #toString} never shows the token.
 */
public final class BearerToken extends CallCredentials {
  public static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  /** Longest token file read (a token is a line of printable ASCII). */
  static final int MAX_FILE_BYTES = 4096;

  private final String token;

  private BearerToken(String token) {
    this.token = token;
  }

  /** A token given as text: one line of printable ASCII without spaces. */
  public static BearerToken of(String token, String what) {
    return new BearerToken(check(token, what));
  }

  /**
   * The token in a file (its first line; surrounding blanks ignored), for {@code what} (the option
   * or key that named it): a clear error if the file is missing, unreadable, too long or empty.
   */
  public static BearerToken read(Path file, String what) {
    byte[] bytes;
    try {
      if (Files.size(file) > MAX_FILE_BYTES) {
        throw new InputException(what + " " + file + ": more than " + MAX_FILE_BYTES + " bytes, not a token file");
      }
      bytes = Files.readAllBytes(file);
    } catch (IOException e) {
      throw new InputException(what + " " + file + ": cannot read (" + e.getClass().getSimpleName() + ")");
    }
    return new BearerToken(check(new String(bytes, StandardCharsets.US_ASCII).strip(), what + " " + file));
  }

  private static String check(String token, String what) {
    if (token == null || token.isEmpty()) {
      throw new InputException(what + ": the token is empty");
    }
    for (int i = 0; i < token.length(); i++) {
      char c = token.charAt(i);
      if (c <= ' ' || c > '~') {
        throw new InputException(what + ": a token is one line of printable ASCII without blanks");
      }
    }
    return token;
  }

  /** The token itself (the server hashes it; nothing should print it). */
  public String secret() {
    return token;
  }

  @Override
  public void applyRequestMetadata(RequestInfo info, Executor appExecutor, MetadataApplier applier) {
    try {
      Metadata m = new Metadata();
      m.put(AUTHORIZATION, "Bearer " + token);
      applier.apply(m);
    } catch (RuntimeException e) {
      applier.fail(Status.UNAUTHENTICATED.withDescription("cannot attach the bearer token").withCause(e));
    }
  }

  @Override
  public String toString() {
    return "BearerToken[hidden]";
  }
}
