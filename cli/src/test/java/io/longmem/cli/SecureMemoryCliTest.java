package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import io.longmem.io.Json;
import io.longmem.memory.security.TokenStore;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.memory.service.TestCerts;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code generate --memory grpcs://...} against a node with TLS (mutual) and tokens: the reference
 * ids with the right token and certificates, one line without; {@code serve} on another address
 * without TLS and tokens refuses with one line.
 */
class SecureMemoryCliTest {
  static final String TOKEN = "cli-worker-token-5e4d3c";

  @Test
  void generateThroughATlsNodeWithATokenFile(@TempDir Path tmp) throws Exception {
    Path tiny = Fixtures.tinyA();
    var cases = Fixtures.json(tiny.resolve("cases.json"));
    long[] book = Fixtures.ids(cases, "book_ids");
    long[] question = Fixtures.ids(cases, "question_ids");
    long[] expected = Fixtures.ids(cases.getAsJsonObject("checks").getAsJsonObject("bf16"), "greedy_ids");
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    Path coll = MemoryCliTest.collection(tmp.resolve("book"), ckpt, MemDType.BFLOAT16, "book", book);
    Path q = Files.writeString(tmp.resolve("q.json"), Json.idList(question));
    TestCerts certs = TestCerts.make(tmp.resolve("certs"));
    Path tokens = Files.writeString(tmp.resolve("tokens.json"), "{\"tokens\": [{\"name\": \"worker\", \"roles\": "
        + "[\"search\", \"sessions\"], \"sha256\": \"" + TokenStore.sha256Hex(TOKEN) + "\"}]}");
    Path token = Files.writeString(tmp.resolve("token"), TOKEN + "\n");
    Path wrong = Files.writeString(tmp.resolve("wrong-token"), "not-" + TOKEN + "\n");
    ServiceConfig config = new ServiceConfig();
    config.port = 0;
    config.collections.put("book", coll.toString());
    config.tls.certChain = certs.cert("server").toString();
    config.tls.privateKey = certs.key("server").toString();
    config.tls.clientCa = certs.ca().toString();
    config.auth.tokensFile = tokens.toString();
    try (MemoryServer server = MemoryServer.start(config)) {
      List<String> common = List.of("generate", "--model", tiny.resolve("model").toString(), "--input-ids",
          q.toString(), "--max-new-tokens", Integer.toString(expected.length), "--greedy", "--last-context-length",
          "20", "--memory", "grpcs://127.0.0.1:" + server.port(), "--collection", "book", "--memory-top-k", "256",
          "--memory-tls-ca", certs.ca().toString(), "--memory-tls-cert",
          certs.cert("client").toString(), "--memory-tls-key", certs.key("client").toString());
      var r = run(common, "--memory-token-file", token.toString());
      assertEquals(0, r.code(), r.err());
      assertEquals(Json.idList(expected), r.out().strip(), "the reference ids through the secured node");
      assertTrue(r.err().contains("TLS memory service at 127.0.0.1"), r.err());
      r = run(common, "--memory-token-file", wrong.toString());
      oneLine(r, "not one this node accepts");
      assertFalse(r.err().contains("not-" + TOKEN), "the token printed: " + r.err());
      r = run(common, "--memory-token-file", tmp.resolve("missing").toString());
      oneLine(r, "--memory-token-file");
      List<String> noKey = new ArrayList<>(common.subList(0, common.size() - 2));
      r = run(noKey, "--memory-token-file", token.toString());
      oneLine(r, "--memory-tls-cert and --memory-tls-key go together");
      Path garbage = Files.writeString(tmp.resolve("garbage.pem"), "not a certificate\n");
      List<String> badCa = new ArrayList<>(common);
      badCa.set(badCa.indexOf("--memory-tls-ca") + 1, garbage.toString());
      r = run(badCa, "--memory-token-file", token.toString());
      oneLine(r, "--memory-tls-ca " + garbage);
    }
  }

  @Test
  void serveElsewhereThanLoopbackWantsTlsAndTokens(@TempDir Path tmp) throws Exception {
    Path conf = Files.writeString(tmp.resolve("node.json"), "{\"bind\": \"0.0.0.0\", \"port\": 0}");
    var r = CliTestSupport.run("serve", "--conf", conf.toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("tls.cert_chain") && r.err().contains("auth.tokens_file"), r.err());
    Path bad = Files.writeString(tmp.resolve("bad.json"), "{\"port\": 0, \"auth\": {\"tokens_file\": \"nope.json\"}}");
    r = CliTestSupport.run("serve", "--conf", bad.toString());
    oneLine(r, "auth.tokens_file " + tmp.resolve("nope.json"));
  }

  private static CliTestSupport.Run run(List<String> common, String... more) {
    List<String> args = new ArrayList<>(common);
    args.addAll(List.of(more));
    return CliTestSupport.run(args.toArray(new String[0]));
  }

  private static void oneLine(CliTestSupport.Run r, String text) {
    assertEquals(2, r.code(), r.err());
    List<String> errors = r.err().lines().filter(l -> l.startsWith("longmem ")).toList();
    assertEquals(1, errors.size(), r.err());
    assertTrue(errors.get(0).contains(text), r.err());
    assertFalse(r.err().contains("\tat "), "a stack trace: " + r.err());
  }
}
