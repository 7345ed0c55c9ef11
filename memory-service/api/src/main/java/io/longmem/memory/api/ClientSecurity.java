package io.longmem.memory.api;

import io.grpc.ChannelCredentials;
import io.grpc.TlsChannelCredentials;
import io.longmem.io.InputException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;

/**
 * How a client reaches a secured node: the CA it trusts for {@code grpcs://} (null: the JVM's
 * roots), its own certificate and key where the node wants mutual TLS, and the bearer token it
 * sends (null: none). Paths are checked when the channel is made, with errors naming the option.
 *
 * @param names the options or keys that set ca, cert and key, for error messages
 */
public record ClientSecurity(Path ca, Path cert, Path key, BearerToken token, String[] names) {
  public static final ClientSecurity NONE = new ClientSecurity(null, null, null, null, null);

  public ClientSecurity {
    if ((cert == null) != (key == null)) {
      throw new InputException(name(names, 1, "client certificate") + " and " + name(names, 2, "client key")
          + " go together (mutual TLS needs both)");
    }
  }

  public static ClientSecurity of(Path ca, Path cert, Path key, BearerToken token) {
    return new ClientSecurity(ca, cert, key, token, null);
  }

  /** Whether anything here needs TLS. */
  public boolean hasTlsFiles() {
    return ca != null || cert != null;
  }

  /** TLS credentials from these files, each checked readable first. */
  public ChannelCredentials tls() {
    try {
      TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
      if (ca != null) {
        b.trustManager(certificates(ca, name(names, 0, "CA")).toFile());
      }
      if (cert != null) {
        b.keyManager(certificates(cert, name(names, 1, "client certificate")).toFile(),
            readable(key, name(names, 2, "client key")).toFile());
      }
      return b.build();
    } catch (IOException e) {
      throw new InputException("TLS files: cannot read (" + e.getMessage() + ")");
    }
  }

  /** The file, or a one-line error naming {@code what} and the path. */
  public static Path readable(Path p, String what) {
    if (!Files.isRegularFile(p)) {
      throw new InputException(what + " " + p + ": no such file");
    }
    if (!Files.isReadable(p)) {
      throw new InputException(what + " " + p + ": not readable");
    }
    return p;
  }

  /** A readable file holding at least one PEM certificate, or a one-line error naming {@code what}. */
  public static Path certificates(Path p, String what) {
    readable(p, what);
    try (InputStream in = Files.newInputStream(p)) {
      if (CertificateFactory.getInstance("X.509").generateCertificates(in).isEmpty()) {
        throw new InputException(what + " " + p + ": no PEM certificate in it");
      }
    } catch (IOException | CertificateException e) {
      throw new InputException(what + " " + p + ": not PEM certificates (" + e.getMessage() + ")");
    }
    return p;
  }

  private static String name(String[] names, int i, String fallback) {
    return names != null && i < names.length && names[i] != null ? names[i] : fallback;
  }
}
