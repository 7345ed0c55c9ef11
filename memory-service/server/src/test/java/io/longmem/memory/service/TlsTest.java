package io.longmem.memory.service;

import static io.longmem.memory.service.SecureNodes.client;
import static io.longmem.memory.service.SecureNodes.plaintext;
import static io.longmem.memory.service.SecureNodes.tls;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.ChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.grpc.ListCollectionsRequest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS on a real node with certificates made by openssl: a node with a certificate speaks TLS
 * only; with tls.client_ca it also wants a client certificate that CA signed.
 */
class TlsTest {
  @TempDir
  static Path tmp;
  static TestCerts certs;
  static TestBooks books;
  static final List<ManagedChannel> OPEN = new ArrayList<>();

  @BeforeAll
  static void make() throws Exception {
    certs = TestCerts.make(tmp.resolve("certs"));
    books = TestBooks.write(tmp.resolve("books"));
  }

  @AfterAll
  static void close() {
    OPEN.forEach(ManagedChannel::shutdownNow);
  }

  static ServiceConfig config(boolean mutual) {
    ServiceConfig c = books.config("local", null);
    c.tls.certChain = certs.cert("server").toString();
    c.tls.privateKey = certs.key("server").toString();
    c.tls.clientCa = mutual ? certs.ca().toString() : null;
    return c;
  }

  static int collections(MemoryServer s, ChannelCredentials creds) {
    return client(s.port(), creds, null, OPEN).listCollections(ListCollectionsRequest.getDefaultInstance())
        .getCollectionsCount();
  }

  static void refused(MemoryServer s, ChannelCredentials creds, String why) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> collections(s, creds), why);
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), why + ": " + e.getStatus());
  }

  @Test
  void aTlsNodeAnswersTlsClientsThatTrustItsCa() throws Exception {
    try (MemoryServer s = MemoryServer.start(config(false))) {
      assertEquals(1, collections(s, tls(certs.ca(), null, null)));
      refused(s, plaintext(), "a plaintext client");
      refused(s, tls(certs.otherCa(), null, null), "a client that does not trust the node's CA");
    }
  }

  @Test
  void mutualTlsWantsAClientCertificateOfTheClientCa() throws Exception {
    try (MemoryServer s = MemoryServer.start(config(true))) {
      assertEquals(1, collections(s, tls(certs.ca(), certs.cert("client"), certs.key("client"))));
      refused(s, tls(certs.ca(), null, null), "no client certificate");
      refused(s, tls(certs.ca(), certs.cert("intruder"), certs.key("intruder")), "a certificate of another CA");
      refused(s, plaintext(), "a plaintext client");
    }
  }
}
