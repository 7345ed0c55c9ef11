package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An encode job killed (SIGKILL, mid-run, in its own JVM) leaves no collection that looks complete;
 * a plain rerun refuses, a resumed rerun finishes it into exactly the collection a clean run writes.
 */
class EncodeKillTest {
  private static final int SHARDS = 8;

  @Test
  void killedRunResumesIntoTheCleanRunsCollection(@TempDir Path tmp) throws Exception {
    Path input = tmp.resolve("docs.jsonl");
    long[] book = JobFixtures.bookIds();
    List<String> lines = new ArrayList<>();
    for (int i = 0; i < 96; i++) {
      long[] ids = new long[96 + i % 32];
      for (int t = 0; t < ids.length; t++) {
        ids[t] = book[(i * 5 + t) % book.length];
      }
      lines.add(JobFixtures.jsonLine(String.format("doc-%03d", i), ids));
    }
    Files.write(input, lines);
    Path model = JobFixtures.tinyA().resolve("model");

    Path clean = tmp.resolve("clean");
    Process p = job(tmp, "clean", input, model, clean, false);
    assertEquals(0, p.waitFor(), () -> log(tmp, "clean"));

    Path killed = tmp.resolve("killed");
    p = job(tmp, "killed", input, model, killed, false);
    Path shards = killed.resolve("shards");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (!(Files.isDirectory(shards) && JobFixtures.files(shards).size() > 0)) {
      if (!p.isAlive()) {
        fail("the job ended before it could be killed:\n" + log(tmp, "killed"));
      }
      if (System.nanoTime() > deadline) {
        p.destroyForcibly();
        fail("no shard finished within 2 minutes:\n" + log(tmp, "killed"));
      }
      Thread.sleep(5);
    }
    p.destroyForcibly().waitFor(); // SIGKILL: no shutdown hooks, no cleanup
    assertFalse(Files.exists(killed.resolve("manifest.json")), "a killed run left a manifest (all shards "
        + "finished before the kill?): " + log(tmp, "killed"));
    int finished = io.longmem.memory.shard.CollectionWriter.finishedShardIds(killed).size();
    assertTrue(finished >= 1 && finished < SHARDS, finished + " shards finished before the kill");

    // the same run again without --resume: refused, nothing touched
    List<String> before = JobFixtures.files(killed);
    SparkSession spark = JobFixtures.spark(1);
    try {
      EncodeSpec spec = new EncodeSpec(model.toAbsolutePath().toString(), null, "float32", "Flat", 65536, SHARDS, 2,
          16384, 1, new Corpus.Spec(input.toString(), Corpus.Format.AUTO, "id", "text", "token_ids"));
      var e = assertThrows(IllegalArgumentException.class, () -> EncodeJob.run(spark, spec, killed, false, 1));
      assertTrue(e.getMessage().contains("unfinished encode") && e.getMessage().contains("--resume"), e.getMessage());
      EncodeSpec other = new EncodeSpec(spec.model(), null, "float32", "Flat", 65536, SHARDS / 2, 2, 16384, 1,
          spec.input());
      e = assertThrows(IllegalArgumentException.class, () -> EncodeJob.run(spark, other, killed, true, 1));
      assertTrue(e.getMessage().contains("another plan") && e.getMessage().contains("shards was 8, now 4"),
          e.getMessage());
    } finally {
      spark.stop();
    }
    assertEquals(before, JobFixtures.files(killed), "a refused run changed the output");

    p = job(tmp, "resumed", input, model, killed, true);
    assertEquals(0, p.waitFor(), () -> log(tmp, "resumed"));
    Matcher m = Pattern.compile("(\\d+) finished by an earlier run").matcher(log(tmp, "resumed"));
    assertTrue(m.find(), log(tmp, "resumed"));
    assertEquals(finished, Integer.parseInt(m.group(1)), "shards reused by the resumed run");

    assertEquals(Files.readString(clean.resolve("manifest.json")), Files.readString(killed.resolve("manifest.json")),
        "the resumed collection differs from the clean run's");
    assertEquals(JobFixtures.files(clean), JobFixtures.files(killed), "leftovers or missing files");
    assertFalse(Files.exists(killed.resolve(".staging")));
  }

  /** The job in its own JVM (the test's classpath and JVM options), one core, one document per batch. */
  private static Process job(Path tmp, String name, Path input, Path model, Path out, boolean resume) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (a.startsWith("--add-opens") || a.startsWith("-Djdk.") || a.startsWith("-Dio.netty")) {
        cmd.add(a);
      }
    }
    cmd.add("-Xmx2g");
    cmd.addAll(Arrays.asList("-cp", System.getProperty("java.class.path"), EncodeJob.class.getName(),
        "--input", input.toString(), "--model", model.toString(), "--output", out.toString(), "--mem-dtype", "float32",
        "--shards", Integer.toString(SHARDS), "--batch-size", "2", "--master", "local[1]", "--torch-threads", "1",
        "--progress-seconds", "1"));
    if (resume) {
      cmd.add("--resume");
    }
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(tmp.resolve(name + ".log").toFile());
    pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
    return pb.start();
  }

  private static String log(Path tmp, String name) {
    try {
      return Files.readString(tmp.resolve(name + ".log"));
    } catch (java.io.IOException e) {
      return "(no log: " + e + ")";
    }
  }
}
