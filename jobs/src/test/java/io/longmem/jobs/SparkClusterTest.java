package io.longmem.jobs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.summarize.SummarizeJob;
import io.longmem.jobs.encode.JobJson;
import io.longmem.model.checkpoint.RandomCheckpoint;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The jobs on a real Spark standalone cluster, as a user runs them: {@code bin/spark-cluster}
 * starts a Master and two Workers (separate JVMs on loopback, Spark's Maven jars in a Spark home),
 * and the shaded jar ({@code target/longmem-jobs.jar}, built before the tests) is spark-submitted
 * to it. What the cluster writes is compared with what the same command writes on local[2]: the
 * encoded collection byte for byte (job.json, manifest, every shard file and index), the
 * summaries row for row (all but the timing column). One Worker SIGKILLed while both run encode
 * tasks: Spark retries them on the other, and the collection is still the same, nothing staged left.
 * One cluster for the class; the killing case runs last (the cluster has one Worker after it).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SparkClusterTest {
  private static final Path REPO = Path.of("..").toAbsolutePath().normalize(); // tests run in jobs/
  private static final Path SCRIPT = REPO.resolve("bin/spark-cluster");
  private static final Path JAR = Path.of("target", "longmem-jobs.jar").toAbsolutePath();
  private static final int SHARDS = 8;

  @TempDir static Path tmp;
  private Path cluster;
  private int port;
  private Path corpus;
  private Path model;
  private Path reference;

  @BeforeAll
  void startCluster() throws Exception {
    assertTrue(Files.isRegularFile(JAR), JAR + " is missing: the jobs module builds it before its tests "
        + "(profile cluster-test-jar), or mvn -B -DskipTests -Pspark-submit package");
    cluster = tmp.resolve("cluster");
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Process p = script(tmp.resolve("start.log"), "start", "2");
    if (!p.waitFor(180, TimeUnit.SECONDS) || p.exitValue() != 0) {
      p.destroyForcibly();
      fail("bin/spark-cluster start failed:\n" + tail(tmp.resolve("start.log")) + clusterLogs());
    }
    // the encode corpus: the conformance book's tokens as 192 documents of 96..127 tokens, 24 a shard
    long[] book = bookIds();
    List<String> lines = new ArrayList<>();
    for (int i = 0; i < 192; i++) {
      JsonObject o = new JsonObject();
      o.addProperty("id", String.format("doc-%03d", i));
      JsonArray ids = new JsonArray();
      for (int t = 0; t < 96 + i % 32; t++) {
        ids.add(book[(i * 5 + t) % book.length]);
      }
      o.add("token_ids", ids);
      lines.add(o.toString());
    }
    corpus = tmp.resolve("docs.jsonl");
    Files.write(corpus, lines);
    model = io.longmem.Fixtures.dir("tiny-a").toAbsolutePath().normalize().resolve("model");
  }

  @AfterAll
  void stopCluster() throws Exception {
    if (cluster != null) {
      Process p = script(tmp.resolve("stop.log"), "stop");
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
    }
  }

  @Test
  @Order(1)
  void encodeOnTheClusterWritesTheLocalCollection() throws Exception {
    Path reference = reference();
    Path out = tmp.resolve("encode-cluster");
    Path log = tmp.resolve("encode-cluster.log");
    submit(log, EncodeJob.class, encodeArgs(out));
    String driver = Files.readString(log);
    // both Workers' executors ran tasks of the job
    var executors = new TreeSet<String>();
    var m = Pattern.compile("Finished task \\S+ in stage \\S+ \\(TID \\d+\\) in \\d+ ms on \\S+ \\(executor (\\d+)\\)")
        .matcher(driver);
    while (m.find()) {
      executors.add(m.group(1));
    }
    assertEquals(2, executors.size(), "executors that ran tasks: " + executors);
    assertSameFiles(reference, out);
  }

  @Test
  @Order(2)
  void summarizeOnTheClusterWritesTheLocalSummaries() throws Exception {
    Path summaryModel = tmp.resolve("summary-model");
    RandomCheckpoint.write(summaryModel, new RandomCheckpoint.Shape(32000, 64, 4, 128, 3, 32, 16, new int[] {1}), 3);
    Files.copy(io.longmem.Fixtures.root().resolve("tokenizers/openllama_v2.model"),
        summaryModel.resolve("tokenizer.model"));
    Path books = REPO.resolve("conf/samples/corpus");
    Path local = tmp.resolve("summaries-local");
    Path out = tmp.resolve("summaries-cluster");
    local(new SummarizeJob(), summarizeArgs(summaryModel, books, local));
    submit(tmp.resolve("summarize-cluster.log"), SummarizeJob.class, summarizeArgs(summaryModel, books, out));
    Map<String, JsonObject> want = summaries(local);
    assertEquals(3, want.size(), "books summarized locally");
    assertEquals(want, summaries(out), "the cluster's summaries (all but seconds)");
    assertTrue(Files.exists(out.resolve("_SUCCESS")), "no _SUCCESS: the job did not commit");
    assertFalse(Files.exists(out.resolve("_temporary")), "task output left uncommitted");
  }

  @Test
  @Order(3)
  void aWorkerKilledMidTaskLeavesTheSameCollection() throws Exception {
    Path reference = reference();
    Path out = tmp.resolve("encode-killed");
    Path log = tmp.resolve("encode-killed.log");
    Process p = script(log, submitCommand(EncodeJob.class, encodeArgs(out)));
    Path staging = out.resolve(".staging");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
    // each executor has one core: two attempts staging at once are one on each Worker, mid-shard
    while (count(staging) < 2) {
      if (!p.isAlive()) {
        fail("the job ended before both Workers were encoding:\n" + tail(log));
      }
      if (System.nanoTime() > deadline) {
        p.destroyForcibly();
        fail("the Workers were never both encoding:\n" + tail(log));
      }
      Thread.sleep(2);
    }
    List<String> staged = list(staging);
    long worker = Long.parseLong(Files.readString(cluster.resolve("worker-2.pid")).trim());
    ProcessHandle.of(worker).orElseThrow(() -> new AssertionError("worker-2 is not running")).destroyForcibly();
    if (!p.waitFor(240, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      fail("the job did not finish after the kill:\n" + tail(log));
    }
    String driver = Files.readString(log);
    assertEquals(0, p.exitValue(), () -> "the job failed after a Worker was killed (staging " + staged + "):\n"
        + tail(log));
    assertTrue(driver.contains("Lost executor"), "the driver never lost an executor:\n" + tail(log));
    assertTrue(Pattern.compile("Starting task \\d+\\.[1-9]|in stage \\d+\\.[1-9]").matcher(driver).find(),
        "no task or stage was retried:\n" + tail(log));
    assertFalse(Files.exists(staging), "staging left: " + list(staging));
    assertSameFiles(reference, out);
  }

  /** The collection local[2] writes (once for the class). */
  private Path reference() {
    if (reference == null) {
      Path dir = tmp.resolve("encode-local");
      local(new EncodeJob(), encodeArgs(dir));
      reference = dir;
    }
    return reference;
  }

  private List<String> encodeArgs(Path out) {
    return List.of("--model", model.toString(), "--input", corpus.toString(), "--output", out.toString(),
        "--shards", Integer.toString(SHARDS), "--mem-dtype", "float32", "--batch-size", "2", "--progress-seconds", "5");
  }

  private static List<String> summarizeArgs(Path model, Path books, Path out) {
    return List.of("--model", model.toString(), "--input", books.toString(), "--output", out.toString(),
        "--max-new-tokens", "6", "--partitions", "2");
  }

  /** The command on an embedded local[2] Spark in this JVM, as bin/longmem runs it. */
  private static void local(Callable<Integer> job, List<String> args) {
    List<String> all = new ArrayList<>(args);
    all.addAll(List.of("--master", "local[2]"));
    Map<String, String> props = Map.of("spark.driver.host", "127.0.0.1", "spark.driver.bindAddress", "127.0.0.1",
        "spark.ui.enabled", "false");
    props.forEach(System::setProperty);
    try {
      assertEquals(0, new CommandLine(job).execute(all.toArray(String[]::new)), "local run of " + all);
    } finally {
      props.keySet().forEach(System::clearProperty);
    }
  }

  private void submit(Path log, Class<?> main, List<String> args) throws Exception {
    Process p = script(log, submitCommand(main, args));
    if (!p.waitFor(240, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      fail("spark-submit of " + main.getSimpleName() + " did not finish:\n" + tail(log) + clusterLogs());
    }
    assertEquals(0, p.exitValue(), () -> "spark-submit of " + main.getSimpleName() + " failed:\n" + tail(log)
        + clusterLogs());
  }

  private static String[] submitCommand(Class<?> main, List<String> args) {
    List<String> cmd = new ArrayList<>(List.of("submit", "--class", main.getName(), JAR.toString()));
    cmd.addAll(args);
    return cmd.toArray(String[]::new);
  }

  /** bin/spark-cluster with this test's cluster directory and master port, output to a log. */
  private Process script(Path log, String... args) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("bash", SCRIPT.toString()));
    cmd.addAll(Arrays.asList(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(REPO.toFile()).redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().put("SPARK_CLUSTER_DIR", cluster.toString());
    pb.environment().put("SPARK_MASTER_PORT", Integer.toString(port));
    pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
    return pb.start();
  }

  /** Same files, same bytes (job.json: but for its result's times). */
  private static void assertSameFiles(Path want, Path got) throws IOException {
    List<String> files = files(want);
    assertTrue(files.contains("manifest.json") && files.contains("job.json"), "reference files " + files);
    assertEquals(files, files(got), "files of " + got);
    for (String f : files) {
      assertArrayEquals(JobJson.withoutTimes(f, Files.readAllBytes(want.resolve(f))),
          JobJson.withoutTimes(f, Files.readAllBytes(got.resolve(f))), f + " differs");
    }
  }

  private static List<String> files(Path dir) throws IOException {
    try (var w = Files.walk(dir)) {
      return w.filter(Files::isRegularFile).map(p -> dir.relativize(p).toString()).sorted().toList();
    }
  }

  /** A summaries directory's rows by id, without the seconds each took. */
  private static Map<String, JsonObject> summaries(Path dir) throws IOException {
    Map<String, JsonObject> rows = new TreeMap<>();
    try (var s = Files.list(dir)) {
      for (Path part : s.filter(p -> p.getFileName().toString().startsWith("part-")).toList()) {
        for (String line : Files.readAllLines(part)) {
          JsonObject o = JsonParser.parseString(line).getAsJsonObject();
          assertTrue(o.remove("seconds") != null, "no seconds in " + line);
          rows.put(o.get("id").getAsString(), o);
        }
      }
    }
    return rows;
  }

  private static long[] bookIds() throws IOException {
    JsonArray a = JsonParser.parseString(Files.readString(io.longmem.Fixtures.dir("tiny-a").resolve("cases.json")))
        .getAsJsonObject().getAsJsonArray("book_ids");
    long[] r = new long[a.size()];
    for (int i = 0; i < r.length; i++) {
      r[i] = a.get(i).getAsLong();
    }
    return r;
  }

  private static int count(Path dir) throws IOException {
    return list(dir).size();
  }

  private static List<String> list(Path dir) throws IOException {
    try (var s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    } catch (java.nio.file.NoSuchFileException e) {
      return List.of();
    }
  }

  private String clusterLogs() {
    StringBuilder b = new StringBuilder();
    Path logs = cluster.resolve("logs");
    try {
      for (String f : list(logs)) {
        b.append("\n--- ").append(f).append('\n').append(tail(logs.resolve(f)));
      }
    } catch (IOException e) {
      b.append("\n(no cluster logs: ").append(e).append(')');
    }
    return b.toString();
  }

  private static String tail(Path log) {
    try {
      String s = Files.readString(log);
      return s.length() > 6000 ? "..." + s.substring(s.length() - 6000) : s;
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }
}
