package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.longmem.io.InputException;
import io.longmem.memory.grpc.ListCollectionsRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A node without TLS and tokens binds loopback only; bad security files fail the start with one
 * line naming the key and the file.
 */
class BindRuleTest {
  @TempDir
  static Path tmp;
  static TestCerts certs;
  static TestBooks books;
  static Path tokens;

  @BeforeAll
  static void make() throws Exception {
    certs = TestCerts.make(tmp.resolve("certs"));
    books = TestBooks.write(tmp.resolve("books"));
    tokens = SecureNodes.tokensFile(tmp);
  }

  static ServiceConfig config(String bind, boolean tls, boolean auth) {
    ServiceConfig c = books.config("local", null);
    c.bind = bind;
    if (tls) {
      c.tls.certChain = certs.cert("server").toString();
      c.tls.privateKey = certs.key("server").toString();
    }
    if (auth) {
      c.auth.tokensFile = tokens.toString();
    }
    return c;
  }

  static String refusal(ServiceConfig c) {
    String m = assertThrows(InputException.class, () -> MemoryServer.start(c).close()).getMessage();
    assertFalse(m.contains("\n"), "one line: " + m);
    return m;
  }

  @Test
  void anotherAddressNeedsTlsAndTokens() throws Exception {
    String m = refusal(config("0.0.0.0", false, false));
    assertTrue(m.contains("tls.cert_chain") && m.contains("auth.tokens_file") && m.contains("0.0.0.0"), m);
    m = refusal(config("0.0.0.0", false, true));
    assertTrue(m.contains("tls.cert_chain") && !m.contains("auth.tokens_file"), m);
    m = refusal(config("0.0.0.0", true, false));
    assertTrue(!m.contains("tls.cert_chain") && m.contains("auth.tokens_file"), m);
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(config("0.0.0.0", true, true))) {
      assertEquals(1, SecureNodes.client(s.port(), SecureNodes.tls(certs.ca(), null, null), SecureNodes.SEARCHER, open)
          .listCollections(ListCollectionsRequest.getDefaultInstance()).getCollectionsCount());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
    for (String loopback : new String[] {"127.0.0.1", "localhost"}) {
      try (MemoryServer s = MemoryServer.start(config(loopback, false, false))) {
        assertTrue(s.port() > 0, loopback);
      }
    }
  }

  /** A config with one security key changed, and what its refusal must name. */
  static void badFile(Consumer<ServiceConfig> change, String... named) {
    ServiceConfig c = config("127.0.0.1", true, true);
    change.accept(c);
    String m = refusal(c);
    for (String n : named) {
      assertTrue(m.contains(n), "'" + n + "' not in: " + m);
    }
  }

  @Test
  void badSecurityFilesAreNamed() throws Exception {
    Path missing = tmp.resolve("missing.pem");
    Path garbage = tmp.resolve("garbage.pem");
    Files.writeString(garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
    Path badJson = tmp.resolve("bad-tokens.json");
    Files.writeString(badJson, "{\"tokens\": [");
    Path badRole = tmp.resolve("bad-role.json");
    Files.writeString(badRole, "{\"tokens\": [{\"name\": \"x\", \"roles\": [\"root\"], \"sha256\": \""
        + "ab".repeat(32) + "\"}]}");
    Path badHash = tmp.resolve("bad-hash.json");
    Files.writeString(badHash, "{\"tokens\": [{\"name\": \"x\", \"roles\": [\"search\"], \"sha256\": \"s3cret\"}]}");
    Path emptyToken = tmp.resolve("empty-token");
    Files.writeString(emptyToken, "\n");
    badFile(c -> c.tls.certChain = missing.toString(), "tls.cert_chain", missing.toString(), "no such file");
    badFile(c -> c.tls.certChain = garbage.toString(), "tls.cert_chain", garbage.toString());
    badFile(c -> c.tls.privateKey = missing.toString(), "tls.private_key", missing.toString());
    badFile(c -> c.tls.privateKey = certs.cert("server").toString(), "tls.private_key");
    badFile(c -> c.tls.privateKey = certs.key("client").toString(), "tls.private_key"); // not the cert's key
    badFile(c -> c.tls.clientCa = garbage.toString(), "tls.client_ca", garbage.toString());
    badFile(c -> c.tls.peerCa = missing.toString(), "tls.peer_ca", missing.toString());
    badFile(c -> c.auth.tokensFile = missing.toString(), "auth.tokens_file", missing.toString());
    badFile(c -> c.auth.tokensFile = badJson.toString(), "auth.tokens_file", "invalid JSON");
    badFile(c -> c.auth.tokensFile = badRole.toString(), "auth.tokens_file", "unknown role 'root'");
    badFile(c -> c.auth.tokensFile = badHash.toString(), "auth.tokens_file", "64 hex digits");
    badFile(c -> c.auth.nodeTokenFile = missing.toString(), "auth.node_token_file", missing.toString());
    badFile(c -> c.auth.nodeTokenFile = emptyToken.toString(), "auth.node_token_file", "empty");
    badFile(c -> c.tls.privateKey = null, "tls.cert_chain and tls.private_key go together");
    badFile(c -> {
      c.tls.certChain = null;
      c.tls.privateKey = null;
      c.tls.clientCa = certs.ca().toString();
    }, "tls.client_ca");
  }
}
