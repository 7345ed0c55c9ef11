package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.io.Npy;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.api.Wire;
import io.longmem.memory.grpc.SearchRequest;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python client (clients/python) from outside, against a real node on loopback serving the
 * same documents as Flat, HNSW and IVF collections: its unittest suite (numpy layouts, sessions,
 * errors, and issue 12's bad requests with a good search after each) runs on Debian's python3
 * with grpcio and numpy, on message classes generated from memory.proto into target/. Then what
 * the Python client answered is compared with the same searches through the Java client and, for
 * the Flat collection, with brute force over the stored keys. Needs python3-grpcio, python3-numpy,
 * python3-protobuf and protoc (bin/install-build-deps); {@code -Dlongmem.skipPython=true} skips it.
 */
class PythonClientTest {
  static final String PYTHON = System.getProperty("longmem.python", "/usr/bin/python3");
  static final int HEADS = TestBooks.HEADS;
  static final int DIM = TestBooks.DIM;

  @TempDir
  Path tmp;

  @Test
  void pythonClientAgainstARealNode() throws Exception {
    assumeFalse(Boolean.getBoolean("longmem.skipPython"), "-Dlongmem.skipPython=true");
    Path root = repositoryRoot();
    Path client = root.resolve("clients/python");
    requireTools();
    Path stubs = Path.of("target/python-stubs").toAbsolutePath();
    Result gen = run(List.of("bash", client.resolve("generate.sh").toString(), stubs.toString()), root, Map.of(), 120);
    if (gen.exit != 0) {
      fail("clients/python/generate.sh failed:\n" + gen.output);
    }

    TestBooks books = TestBooks.write(tmp.resolve("data/books"));
    books.writeAs(tmp.resolve("data/hnsw"), "HNSW32");
    books.writeAs(tmp.resolve("data/ivf"), "IVF4,PQ4");
    ServiceConfig c = books.config("local", null);
    c.collections = Map.of("books", tmp.resolve("data/books").toString(), "hnsw", tmp.resolve("data/hnsw").toString(),
        "ivf", tmp.resolve("data/ivf").toString());
    c.maxK = 4096; // issue 12's 4096 x 4096 must be refused by its answer's size, not by k
    c.maxQueries = 4096;
    c.maxMessageMb = 64;
    Path out = Files.createDirectories(tmp.resolve("out"));
    // a second node over the Flat collection with mutual TLS and tokens, for tests/test_secure.py
    TestCerts certs = TestCerts.make(tmp.resolve("certs"));
    ServiceConfig secure = books.config("secure", null);
    secure.tls.certChain = certs.cert("server").toString();
    secure.tls.privateKey = certs.key("server").toString();
    secure.tls.clientCa = certs.ca().toString();
    secure.auth.tokensFile = SecureNodes.tokensFile(tmp).toString();
    try (MemoryServer server = MemoryServer.start(c);
        MemoryServer secured = MemoryServer.start(secure);
        MemoryEndpoint endpoint = MemoryEndpoint.remote("grpc://127.0.0.1:" + server.port())) {
      Map<String, String> env = new java.util.HashMap<>(Map.of("PYTHONPATH", stubs + File.pathSeparator + client,
          "PYTHONDONTWRITEBYTECODE", "1",
          "LONGMEM_ADDRESS", "127.0.0.1:" + server.port(),
          "LONGMEM_OUT", out.toString(),
          "LONGMEM_SERVER_ROOT", tmp.toAbsolutePath().toString(),
          "LONGMEM_SECURE_ADDRESS", "127.0.0.1:" + secured.port(),
          "LONGMEM_TLS_CA", certs.ca().toString()));
      env.putAll(Map.of("LONGMEM_CLIENT_CERT", certs.cert("client").toString(),
          "LONGMEM_CLIENT_KEY", certs.key("client").toString(),
          "LONGMEM_TOKEN", SecureNodes.WORKER, "LONGMEM_OTHER_TOKEN", SecureNodes.OTHER_WORKER));
      Result py = run(List.of(PYTHON, "-m", "unittest", "discover", "-v", "-s", client.resolve("tests").toString()),
          client, env, 600);
      if (py.exit != 0) {
        fail("the Python client's tests failed (exit " + py.exit + "):\n" + py.output);
      }
      System.out.println("python client tests:\n" + py.output);
      assertTrue(py.output.contains("test_another_tokens_session_is_not_found") && !py.output.contains("skipped"),
          "the TLS and token tests ran:\n" + py.output);
      checkCollections(out.resolve("collections/collections.json"));
      SearchRequest.Builder flat = checkAgainstJava(endpoint, out.resolve("flat"), b -> b);
      checkAgainstBruteForce(books, out.resolve("flat"), flat);
      checkAgainstJava(endpoint, out.resolve("hnsw"), b -> b.setEfSearch(64));
      checkAgainstJava(endpoint, out.resolve("ivf"), b -> b.setNprobe(4));
    }
  }

  /** What the Python client listed is what the test wrote. */
  private static void checkCollections(Path file) throws IOException {
    JsonArray all = JsonParser.parseString(Files.readString(file)).getAsJsonArray();
    Map<String, String> factories = Map.of("books", "Flat", "hnsw", "HNSW32", "ivf", "IVF4,PQ4");
    assertEquals(factories.size(), all.size());
    for (JsonElement e : all) {
      JsonObject o = e.getAsJsonObject();
      String name = o.get("name").getAsString();
      assertEquals(factories.get(name), o.get("index_factory").getAsString(), name);
      assertEquals(HEADS, o.get("heads").getAsInt());
      assertEquals(DIM, o.get("head_dim").getAsInt());
      assertEquals(List.of(1, 2), ints(o.getAsJsonArray("layers")));
      assertEquals((long) TestBooks.TOKENS * TestBooks.allDocs().size(), o.get("tokens").getAsLong());
      List<String> docs = new ArrayList<>();
      o.getAsJsonArray("documents").forEach(d -> docs.add(d.getAsString()));
      assertEquals(new HashSet<>(TestBooks.allDocs()), new HashSet<>(docs), name);
    }
  }

  /**
   * The search the Python client made (its queries, token-major [Q, H, D]) made again through the
   * Java client: the same pairs, scores, keys and values at every query, head and rank.
   */
  private static SearchRequest.Builder checkAgainstJava(MemoryEndpoint endpoint, Path dir,
      UnaryOperator<SearchRequest.Builder> options) throws IOException {
    Npy.Array q = Npy.read(dir.resolve("queries.npy"));
    JsonObject meta = JsonParser.parseString(Files.readString(dir.resolve("documents.json"))).getAsJsonObject();
    int queries = (int) q.shape()[0];
    int k = meta.get("k").getAsInt();
    assertEquals(List.of((long) queries, (long) HEADS, (long) DIM), List.of(q.shape()[0], q.shape()[1], q.shape()[2]));
    float[] headMajor = new float[q.data().length];
    for (int i = 0; i < queries; i++) {
      for (int h = 0; h < HEADS; h++) {
        System.arraycopy(q.data(), (i * HEADS + h) * DIM, headMajor, (h * queries + i) * DIM, DIM);
      }
    }
    SearchRequest.Builder req = options.apply(SearchRequest.newBuilder().addCollections(meta.get("collection")
        .getAsString()).setLayer(2).setHeads(HEADS).setQueries(queries).setHeadDim(DIM)
        .setQuery(Wire.bytes(headMajor, headMajor.length)).setK(k));
    Hits hits = Protos.fromResponse(endpoint.stub().withDeadlineAfter(30, TimeUnit.SECONDS).search(req.build()), HEADS,
        queries, k, DIM);
    float[] keys = Npy.read(dir.resolve("keys.npy")).data();
    float[] values = Npy.read(dir.resolve("values.npy")).data();
    float[] scores = Npy.read(dir.resolve("scores.npy")).data();
    float[] positions = Npy.read(dir.resolve("positions.npy")).data();
    JsonArray docs = meta.getAsJsonArray("documents");
    assertEquals(queries * HEADS * k * DIM, keys.length);
    for (int i = 0; i < queries; i++) {
      for (int h = 0; h < HEADS; h++) {
        Hits.Head head = hits.head(h);
        for (int j = 0; j < k; j++) {
          String at = dir.getFileName() + " query " + i + " head " + h + " rank " + j;
          int slot = head.slots()[i * k + j];
          int py = (i * HEADS + h) * k + j;
          assertTrue(slot >= 0, at);
          assertEquals(hits.documents().get(head.pairDocument()[slot]),
              docs.get(i).getAsJsonArray().get(h).getAsJsonArray().get(j).getAsString(), at);
          assertEquals(head.pairPosition()[slot], (int) positions[py], at);
          assertEquals(head.scores()[i * k + j], scores[py], 0f, at);
          for (int d = 0; d < DIM; d++) {
            assertEquals(head.keys()[slot * DIM + d], keys[py * DIM + d], 0f, at);
            assertEquals(head.values()[slot * DIM + d], values[py * DIM + d], 0f, at);
          }
        }
      }
    }
    return req;
  }

  /** The Flat search the Python client made, checked against brute force over the stored keys. */
  private static void checkAgainstBruteForce(TestBooks books, Path dir, SearchRequest.Builder req) throws IOException {
    Npy.Array q = Npy.read(dir.resolve("queries.npy"));
    int queries = req.getQueries();
    int k = req.getK();
    float[] headMajor = Wire.floats(req.getQuery(), "query");
    float[] keys = Npy.read(dir.resolve("keys.npy")).data();
    float[] values = Npy.read(dir.resolve("values.npy")).data();
    float[] scores = Npy.read(dir.resolve("scores.npy")).data();
    float[] positions = Npy.read(dir.resolve("positions.npy")).data();
    assertEquals(queries, q.shape()[0]);
    for (int i = 0; i < queries; i++) {
      for (int h = 0; h < HEADS; h++) {
        List<Object[]> truth = books.truth(headMajor, queries, h, i, 1, TestBooks.allDocs());
        for (int j = 0; j < k; j++) {
          int py = (i * HEADS + h) * k + j;
          String doc = (String) truth.get(j)[0];
          int pos = (int) truth.get(j)[1];
          assertEquals(pos, (int) positions[py], "query " + i + " head " + h + " rank " + j);
          assertEquals((double) truth.get(j)[2], scores[py], 1e-3);
          for (int d = 0; d < DIM; d++) {
            assertEquals(books.keys.get(doc)[1][(pos * HEADS + h) * DIM + d], keys[py * DIM + d], 0f);
            assertEquals(books.values.get(doc)[1][(pos * HEADS + h) * DIM + d], values[py * DIM + d], 0f);
          }
        }
      }
    }
  }

  private static List<Integer> ints(JsonArray a) {
    List<Integer> out = new ArrayList<>();
    a.forEach(e -> out.add(e.getAsInt()));
    return out;
  }

  /** python3 with grpcio, numpy and protobuf, and protoc; a clear failure naming the installer if not. */
  private static void requireTools() throws Exception {
    String missing = null;
    try {
      Result p = run(List.of(PYTHON, "-c", "import grpc, numpy, google.protobuf"), Path.of("."), Map.of(), 60);
      if (p.exit != 0) {
        missing = PYTHON + " lacks grpcio, numpy or protobuf: " + p.output.strip();
      }
      Result protoc = run(List.of("protoc", "--version"), Path.of("."), Map.of(), 60);
      if (protoc.exit != 0 && missing == null) {
        missing = "protoc does not run: " + protoc.output.strip();
      }
    } catch (IOException e) {
      missing = e.getMessage();
    }
    if (missing != null) {
      fail("the Python client test needs Debian's python3-grpcio, python3-numpy, python3-protobuf and "
          + "protobuf-compiler: run bin/install-build-deps as root (or -Dlongmem.skipPython=true): " + missing);
    }
  }

  private static Path repositoryRoot() {
    for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
      if (Files.isRegularFile(p.resolve("clients/python/generate.sh"))) {
        return p;
      }
    }
    throw new IllegalStateException("clients/python/generate.sh not found above " + Path.of("").toAbsolutePath());
  }

  private record Result(int exit, String output) {}

  private static Result run(List<String> cmd, Path dir, Map<String, String> env, int timeoutSeconds)
      throws IOException, InterruptedException {
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true);
    pb.environment().putAll(env);
    Path log = Files.createTempFile("longmem-python", ".log");
    pb.redirectOutput(log.toFile());
    Process p = pb.start();
    try {
      boolean done = p.waitFor(timeoutSeconds, TimeUnit.SECONDS);
      if (!done) {
        p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
      String output = new String(Files.readAllBytes(log), StandardCharsets.UTF_8);
      if (!done) {
        fail(String.join(" ", cmd) + " did not finish in " + timeoutSeconds + " s:\n" + output);
      }
      return new Result(p.exitValue(), output);
    } finally {
      p.destroyForcibly();
      Files.deleteIfExists(log);
    }
  }
}
