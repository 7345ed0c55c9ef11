package io.longmem.memory.service;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Real certificates made at test time by the {@code openssl} command (bin/install-build-deps
 * installs it): a CA, a server certificate it signed for IP:127.0.0.1 and DNS:localhost, a client
 * certificate it signed, and a second CA nobody trusts with a client certificate of its own. Keys
 * are P-256, written PKCS#8 (what gRPC reads). The command line's tests use them too (the test jar).
 */
public final class TestCerts {
  final Path dir;

  private TestCerts(Path dir) {
    this.dir = dir;
  }

  /** Makes everything in {@code dir} (about a second). */
  public static TestCerts make(Path dir) throws IOException, InterruptedException {
    return make(dir, List.of());
  }

  /** The same, the server certificate also valid for {@code ips} (nodes on other addresses). */
  public static TestCerts make(Path dir, List<String> ips) throws IOException, InterruptedException {
    Files.createDirectories(dir);
    TestCerts c = new TestCerts(dir);
    c.ca("ca");
    c.ca("other-ca");
    Files.writeString(dir.resolve("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost"
        + ips.stream().map(ip -> ",IP:" + ip).reduce("", String::concat) + "\n"
        + "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n");
    Files.writeString(dir.resolve("client.ext"), "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        + "extendedKeyUsage=clientAuth\n");
    c.signed("server", "localhost", "ca", "server.ext");
    c.signed("client", "test-client", "ca", "client.ext");
    c.signed("intruder", "intruder", "other-ca", "client.ext");
    return c;
  }

  public Path ca() {
    return dir.resolve("ca.pem");
  }

  public Path otherCa() {
    return dir.resolve("other-ca.pem");
  }

  public Path cert(String name) {
    return dir.resolve(name + ".pem");
  }

  public Path key(String name) {
    return dir.resolve(name + ".key");
  }

  private void ca(String name) throws IOException, InterruptedException {
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + name);
  }

  private void signed(String name, String cn, String ca, String ext) throws IOException, InterruptedException {
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn);
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
        "-out", name + ".pem", "-days", "2", "-extfile", ext);
  }

  private void openssl(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add("openssl");
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IOException("openssl " + String.join(" ", args) + " failed (install openssl: bin/install-build-deps): "
          + out);
    }
  }
}
