package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.GsonBuilder;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14 on real separate hosts: three network namespaces joined by veth pairs to a bridge in a
 * fifth, a memory node as its own JVM in each (replication 2 from a cluster file), and a client
 * JVM in a fourth sending a steady 20 searches/s over all three nodes, every answer checked
 * against brute force. Phases: steady; a silent link cut of one node (its packets dropped both
 * ways, so calls hang rather than fail); the link back; a rolling restart of all three nodes.
 * Prints p50/p99, failed and wrong answers per phase. Needs root and iproute2 (skipped
 * otherwise); every address is in 10.213.7.0/24 inside the test's own namespaces.
 *
 * <p>{@code -Dlongmem.netns.compare=true} also runs the same phases with health tracking and
 * hedging off (the behaviour before them), for the record; it asserts nothing.
 */
class NetnsClusterTest {
  static final String NET = "10.213.7.";
  static final int PORT = 7070;
  static final long HEALTH_MS = 1000;
  static final String[][] SHARDS = {{"shard-0", "shard-1"}, {"shard-1", "shard-2"}, {"shard-2", "shard-0"}};

  @TempDir
  Path tmp;

  @Test
  void searchesStayExactThroughALinkCutAndARollingRestart() throws Exception {
    List<Phase> phases = run(false);
    Phase steady = phases.get(0);
    for (Phase p : phases) {
      assertEquals(0, p.failed, p.name + ": failed searches");
      assertEquals(0, p.wrong, p.name + ": wrong answers");
      assertTrue(p.count > 0, p.name + ": no searches");
    }
    long bound = 2 * steady.p99 + HEALTH_MS;
    assertTrue(phases.get(1).p99 <= bound, "link cut p99 " + phases.get(1).p99 + " ms > 2 x steady p99 + "
        + HEALTH_MS + " = " + bound + " ms");
  }

  @Test
  void theOldBehaviourForComparison() throws Exception {
    assumeTrue(Boolean.getBoolean("longmem.netns.compare"), "run with -Dlongmem.netns.compare=true");
    run(true);
  }

  /**
   * One node's configuration: the one place it is built (a node bound to a non-loopback address
   * will need TLS and tokens here). {@code old}: health tracking and hedging off.
   */
  static Map<String, Object> nodeConfig(int node, Path collection, Path cluster, Security sec, boolean old) {
    Map<String, Object> c = new LinkedHashMap<>();
    // not loopback: TLS and tokens are required; nodes call each other over TLS with the node token
    c.put("tls", Map.of("cert_chain", sec.certs.cert("server").toString(), "private_key",
        sec.certs.key("server").toString(), "peer_ca", sec.certs.ca().toString()));
    c.put("auth", Map.of("tokens_file", sec.tokens.toString(), "node_token_file", sec.nodeToken.toString()));
    c.put("bind", NET + node);
    c.put("port", PORT);
    c.put("node_id", "n" + node);
    c.put("collections", Map.of("books", collection.toString()));
    c.put("cluster", cluster.toString());
    c.put("max_k", 64);
    c.put("max_message_mb", 4);
    c.put("search_threads", 1);
    c.put("remote_deadline_ms", 3000);
    c.put("remote_connect_ms", 1000);
    c.put("health_interval_ms", old ? 0 : HEALTH_MS);
    c.put("hedge_ms", old ? 1_000_000 : 100);
    return c;
  }

  /** The certificates (valid for the three nodes' addresses) and tokens the nodes and the client use. */
  record Security(TestCerts certs, Path tokens, Path nodeToken, Path clientToken) {
    static Security make(Path dir) throws Exception {
      TestCerts certs = TestCerts.make(dir.resolve("certs"), List.of(NET + 1, NET + 2, NET + 3));
      Path nodeToken = Files.writeString(dir.resolve("node.token"), SecureNodes.ADMIN);
      Path clientToken = Files.writeString(dir.resolve("client.token"), SecureNodes.SEARCHER);
      return new Security(certs, SecureNodes.tokensFile(dir), nodeToken, clientToken);
    }
  }

  /** The client's endpoint: all three nodes over TLS, round robin; hedged after 150 ms unless {@code old}. */
  static String clientUri(boolean old) {
    return "grpcs://" + NET + "1:" + PORT + "," + NET + "2:" + PORT + "," + NET + "3:" + PORT + "?lb=round_robin"
        + (old ? "" : "&hedge_ms=150");
  }

  List<Phase> run(boolean old) throws Exception {
    assumeTrue("root".equals(System.getProperty("user.name")), "NetnsClusterTest needs root (ip netns)");
    String prefix = "lmt" + ProcessHandle.current().pid() + (old ? "o" : "n");
    try (Netns net = new Netns(prefix)) {
      net.create();
      Path books = tmp.resolve("books");
      TestBooks.write(books);
      Security sec = Security.make(tmp);
      Path cluster = tmp.resolve("cluster.json");
      StringBuilder nodes = new StringBuilder();
      for (int i = 1; i <= 3; i++) {
        nodes.append(i == 1 ? "" : ",").append("{\"id\": \"n").append(i).append("\", \"address\": \"").append(NET)
            .append(i).append(':').append(PORT).append("\", \"shards\": {\"books\": [\"")
            .append(String.join("\", \"", SHARDS[i - 1])).append("\"]}}");
      }
      Files.writeString(cluster, "{\"replication\": 2, \"nodes\": [" + nodes + "]}");
      Path logs = Files.createDirectories(Path.of("target", "netns-logs", prefix)); // kept for a look afterwards
      Child[] node = new Child[4];
      Child client = null;
      try {
        for (int i = 1; i <= 3; i++) {
          Path conf = tmp.resolve("node" + i + ".json");
          Files.writeString(conf, new GsonBuilder().setPrettyPrinting().create()
              .toJson(nodeConfig(i, books, cluster, sec, old)));
          node[i] = Child.start(net.ns("h" + i), logs.resolve("node" + i + ".log"), NetnsNode.class.getName(),
              conf.toString());
        }
        for (int i = 1; i <= 3; i++) {
          node[i].await("READY", 90);
        }
        client = Child.start(net.ns("c"), logs.resolve("client.log"), NetnsLoad.class.getName(), clientUri(old),
            "20", "5000", tmp.resolve("client-books").toString(), sec.certs.ca().toString(), sec.clientToken.toString());
        client.await("STARTED", 90);
        List<long[]> marks = new ArrayList<>();
        List<String> names = List.of("steady", "link cut", "link back", "rolling restart");
        Thread.sleep(3000); // the client's first connections, the JIT
        marks.add(new long[] {System.currentTimeMillis()});
        Thread.sleep(8000);
        marks.add(new long[] {System.currentTimeMillis()});
        net.cut(2);
        Thread.sleep(8000);
        net.restore(2);
        marks.add(new long[] {System.currentTimeMillis()});
        Thread.sleep(6000);
        marks.add(new long[] {System.currentTimeMillis()});
        for (int i = 1; i <= 3; i++) {
          node[i].stop();
          node[i] = Child.start(net.ns("h" + i), logs.resolve("node" + i + ".log"), NetnsNode.class.getName(),
              tmp.resolve("node" + i + ".json").toString());
          node[i].await("READY", 90);
          Thread.sleep(2 * HEALTH_MS); // the others take it back before the next goes
        }
        long end = System.currentTimeMillis();
        client.process.getOutputStream().close(); // the client stops sending
        client.process.waitFor(20, TimeUnit.SECONDS);
        client.drained.await(10, TimeUnit.SECONDS);
        List<Phase> phases = new ArrayList<>();
        for (int p = 0; p < names.size(); p++) {
          long from = marks.get(p)[0];
          long to = p + 1 < marks.size() ? marks.get(p + 1)[0] : end;
          phases.add(Phase.of(names.get(p), client.lines, from, to));
        }
        System.out.println((old ? "OLD behaviour (health off, hedge_ms 1000000, client not hedged)"
            : "NEW behaviour (health_interval_ms 1000, hedge_ms 100, client hedge_ms 150)") + ", 20 searches/s:");
        System.out.println(Phase.HEADER);
        phases.forEach(p -> System.out.println(p.row()));
        client.lines.stream().filter(l -> l.startsWith("R ") && !l.contains(" OK")).limit(5).forEach(l -> System.out.println("  " + l));
        return phases;
      } finally {
        if (client != null) {
          client.kill();
        }
        for (Child c : node) {
          if (c != null) {
            c.kill();
          }
        }
      }
    }
  }

  /** The searches of one phase: those sent in [from, to). */
  static final class Phase {
    static final String HEADER = String.format("%-16s %8s %8s %8s %8s %7s %6s", "phase", "searches", "p50 ms",
        "p99 ms", "max ms", "failed", "wrong");
    String name;
    int count;
    long p50;
    long p99;
    long max;
    int failed;
    int wrong;

    static Phase of(String name, List<String> lines, long from, long to) {
      Phase p = new Phase();
      p.name = name;
      List<Long> ms = new ArrayList<>();
      synchronized (lines) {
        for (String l : lines) {
          String[] f = l.split(" ", 5);
          if (f.length < 4 || !f[0].equals("R")) {
            continue; // not a search's line
          }
          long sent = Long.parseLong(f[1]);
          if (sent < from || sent >= to) {
            continue;
          }
          ms.add(Long.parseLong(f[2]));
          p.failed += f[3].equals("FAIL") ? 1 : 0;
          p.wrong += f[3].equals("WRONG") ? 1 : 0;
        }
      }
      ms.sort(null);
      p.count = ms.size();
      if (!ms.isEmpty()) {
        p.p50 = ms.get(ms.size() / 2);
        p.p99 = ms.get(Math.min(ms.size() - 1, (int) Math.ceil(ms.size() * 0.99) - 1));
        p.max = ms.get(ms.size() - 1);
      }
      return p;
    }

    String row() {
      return String.format("%-16s %8d %8d %8d %8d %7d %6d", name, count, p50, p99, max, failed, wrong);
    }
  }

  /** A JVM in a namespace, its stdout lines collected. */
  static final class Child {
    final Process process;
    final Path log;
    final List<String> lines = java.util.Collections.synchronizedList(new ArrayList<>());
    final CountDownLatch drained = new CountDownLatch(1);

    private Child(Process process, Path log) {
      this.process = process;
      this.log = log;
      Thread reader = new Thread(() -> {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
            StandardCharsets.UTF_8))) {
          for (String l; (l = r.readLine()) != null; ) {
            lines.add(l);
          }
        } catch (IOException e) {
          // the process is gone
        } finally {
          drained.countDown();
        }
      });
      reader.setDaemon(true);
      reader.start();
    }

    static Child start(String ns, Path log, String main, String... args) throws IOException {
      List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", ns,
          Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx384m", "-XX:+UseSerialGC",
          "-XX:TieredStopAtLevel=1", "--add-opens=java.base/java.nio=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), main));
      cmd.addAll(Arrays.asList(args));
      return new Child(new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile())).start(),
          log);
    }

    void await(String line, int seconds) throws InterruptedException {
      long end = System.nanoTime() + seconds * 1_000_000_000L;
      while (System.nanoTime() < end) {
        synchronized (lines) {
          if (lines.stream().anyMatch(l -> l.startsWith(line))) {
            return;
          }
        }
        if (!process.isAlive()) {
          String err = "";
          try {
            List<String> all = Files.readAllLines(log);
            err = String.join("\n", all.subList(Math.max(0, all.size() - 15), all.size()));
          } catch (IOException e) {
            err = e.toString();
          }
          throw new AssertionError("the child exited (" + process.exitValue() + ") before " + line + ":\n" + err);
        }
        Thread.sleep(50);
      }
      throw new AssertionError("no " + line + " after " + seconds + " s");
    }

    /** SIGTERM (the node closes as serve does), then waits for it. */
    void stop() throws InterruptedException {
      process.destroy();
      if (!process.waitFor(15, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      }
    }

    void kill() {
      process.destroyForcibly();
      try {
        process.waitFor(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /**
   * The namespaces: {@code PREFIX-br} holds the bridge, {@code PREFIX-h1..3} the nodes
   * (10.213.7.1-3), {@code PREFIX-c} the client (10.213.7.9); each joined to the bridge by a veth
   * pair made inside the namespaces (the host's own interfaces are never touched). Deleted on close.
   */
  static final class Netns implements AutoCloseable {
    final String prefix;
    final List<String> made = new ArrayList<>();

    Netns(String prefix) {
      this.prefix = prefix;
    }

    String ns(String name) {
      return prefix + "-" + name;
    }

    void create() throws Exception {
      String br = ns("br");
      add(br);
      ip(br, "link", "add", "br0", "type", "bridge");
      ip(br, "link", "set", "br0", "up");
      String[][] hosts = {{"h1", "1"}, {"h2", "2"}, {"h3", "3"}, {"c", "9"}};
      for (String[] h : hosts) {
        String ns = ns(h[0]);
        add(ns);
        ip(br, "link", "add", "vb" + h[0], "type", "veth", "peer", "name", "eth0", "netns", ns);
        ip(br, "link", "set", "vb" + h[0], "master", "br0");
        ip(br, "link", "set", "vb" + h[0], "up");
        ip(ns, "addr", "add", NET + h[1] + "/24", "dev", "eth0");
        ip(ns, "link", "set", "eth0", "up");
        ip(ns, "link", "set", "lo", "up");
      }
    }

    private void add(String ns) throws Exception {
      Process p;
      try {
        p = new ProcessBuilder("ip", "netns", "add", ns).redirectErrorStream(true).start();
      } catch (IOException noIp) {
        assumeTrue(false, "no ip command (iproute2): " + noIp.getMessage());
        throw noIp;
      }
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (p.waitFor() != 0) {
        assumeTrue(made.isEmpty(), "ip netns add failed: " + out.trim());
        throw new IllegalStateException("ip netns add " + ns + ": " + out.trim());
      }
      made.add(ns);
    }

    /** Drops every packet to and from node {@code i} (netem loss 100%, or a pfifo of 0 packets). */
    void cut(int i) throws Exception {
      drop(ns("br"), "vbh" + i);
      drop(ns("h" + i), "eth0");
    }

    void restore(int i) throws Exception {
      run("ip", "netns", "exec", ns("br"), "tc", "qdisc", "del", "dev", "vbh" + i, "root");
      run("ip", "netns", "exec", ns("h" + i), "tc", "qdisc", "del", "dev", "eth0", "root");
    }

    private void drop(String ns, String dev) throws Exception {
      try {
        run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", "100%");
      } catch (IllegalStateException noNetem) { // sch_netem is not everywhere
        run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "pfifo", "limit", "0");
      }
    }

    private static void ip(String ns, String... args) throws Exception {
      List<String> cmd = new ArrayList<>(List.of("ip", "-n", ns));
      cmd.addAll(Arrays.asList(args));
      run(cmd.toArray(new String[0]));
    }

    private static void run(String... cmd) throws Exception {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (p.waitFor() != 0) {
        throw new IllegalStateException(String.join(" ", cmd) + ": " + out.trim());
      }
    }

    @Override
    public void close() {
      for (String ns : made) {
        try {
          run("ip", "netns", "del", ns);
        } catch (Exception e) {
          System.err.println("could not delete namespace " + ns + ": " + e.getMessage());
        }
      }
    }
  }
}
