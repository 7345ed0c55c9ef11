package io.longmem.memory.shard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A file truncated under its mappings: every read of its lost pages (native, Java, a new search's
 * pin) fails with a clear error and the JVM lives. Run in a child JVM ({@link TruncationProbe}),
 * so that a fault that is not caught kills the child, not the test runner.
 */
class TruncatedFilesTest {
  @Test
  void readsOfATruncatedFileFailCleanly(@TempDir Path tmp) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("--add-opens=java.base/java.nio=ALL-UNNAMED"); // Arrow's memory access, as the test JVM has
    for (String arg : java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (arg.startsWith("--add-")) {
        cmd.add(arg);
      }
    }
    String variant = System.getProperty("longmem.faiss.variant");
    if (variant != null) {
      cmd.add("-Dlongmem.faiss.variant=" + variant);
    }
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), TruncationProbe.class.getName(),
        tmp.resolve("col").toString()));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    byte[] bytes = p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the probe finished");
    String out = new String(bytes, StandardCharsets.UTF_8);
    assertEquals(0, p.exitValue(), out);
    assertTrue(out.contains("native: a memory-mapped shard file could not be read (SIGBUS)"), out);
    assertTrue(out.contains("native again:"), out);
    assertTrue(out.contains("good read: ok"), out);
    assertTrue(out.contains("java: ") && out.contains("layer-01.arrow could not be read"), out);
    assertTrue(out.contains("pin: ") && out.contains("layer-01.arrow"), out);
    assertTrue(out.contains("alive"), out);
    assertFalse(out.contains("FAIL"), out);
  }
}
