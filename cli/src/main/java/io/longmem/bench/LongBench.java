package io.longmem.bench;

import ai.djl.Device;
import io.longmem.io.InputException;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.memory.ReadMemory;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code bin/longmem bench long}: reads book-length documents (random tokens, a small random model)
 * into memory as the encode job and a long prompt do, window by window, with dense memory (every
 * window attends to everything before it: quadratic) and with the kNN read (linear). Each read
 * runs in a JVM of its own, so its peak resident memory (VmHWM) is its own.
 */
@Command(name = "long", mixinStandardHelpOptions = true,
    description = "Per-token time and peak resident memory reading 20k-200k-token documents with --read-memory dense "
        + "and knn (each read in a child JVM); prints the knn ratio of per-token time 200k/20k (target <= 1.5x).")
public final class LongBench implements Callable<Integer> {
  @Option(names = "--dir", description = "where the random model is kept (reused; default: a temporary directory)")
  Path dir;
  @Option(names = "--tokens", split = ",", defaultValue = "20000,50000,200000") int[] tokens;
  @Option(names = "--read-memory", split = ",", defaultValue = "knn,dense",
      description = "reads compared: dense, knn[:K], exact-knn[:K] (default: ${DEFAULT-VALUE})")
  String[] reads;
  @Option(names = "--read-k", defaultValue = "32", description = "K of knn without one (default: ${DEFAULT-VALUE})")
  int readK;
  @Option(names = "--dense-max-tokens", defaultValue = "50000",
      description = "longest document read with dense memory (quadratic: 200k takes many minutes)")
  int denseMax;
  @Option(names = "--hidden", defaultValue = "128") int hidden;
  @Option(names = "--heads", defaultValue = "4") int heads;
  @Option(names = "--window", defaultValue = "2048", description = "max_position_embeddings (LongLLaMA's: 2048)")
  int window;

  @Override
  public Integer call() throws Exception {
    for (int n : tokens) {
      if (n < 1) {
        throw new InputException("--tokens must be >= 1, got " + n);
      }
    }
    List<ReadMemory> modes = new ArrayList<>();
    for (String r : reads) {
      modes.add(ReadMemory.parse(r, readK));
    }
    Path model = (dir != null ? dir : Files.createTempDirectory("longmem-bench-long-")).resolve("model");
    if (!Files.exists(model.resolve("config.json"))) {
      // 3 layers, memory in 1 and 2: a read computes layers 0-2 (nothing after the last memory layer)
      RandomCheckpoint.write(model, new RandomCheckpoint.Shape(32000, hidden, heads, hidden * 11 / 4, 3, window,
          window / 2, new int[] {1, 2}), 1);
    }
    System.out.printf(Locale.ROOT, "bench long: random model hidden %d, %d heads, window %d, memory layers 1,2; "
        + "%d threads; each read in its own JVM%n", hidden, heads, window, Runtime.getRuntime().availableProcessors());
    // CPU time (all threads, the process's own) next to wall time: on a shared machine the wall
    // time also measures the neighbours
    System.out.printf(Locale.ROOT, "%-14s %9s %9s %11s %9s %12s %12s%n", "read", "tokens", "seconds", "us/token",
        "CPU s", "CPU us/tok", "peak RSS MB");
    Map<String, Map<Integer, Double>> perToken = new LinkedHashMap<>();
    Map<String, Map<Integer, Double>> cpuPerToken = new LinkedHashMap<>();
    for (ReadMemory mode : modes) {
      for (int n : tokens) {
        if (mode.kind() == ReadMemory.Kind.DENSE && n > denseMax) {
          System.out.printf(Locale.ROOT, "%-14s %9d   (skipped: over --dense-max-tokens %d)%n", mode, n, denseMax);
          continue;
        }
        double[] r = child(model, mode, n);
        perToken.computeIfAbsent(mode.toString(), m -> new LinkedHashMap<>()).put(n, r[0] / n * 1e6);
        cpuPerToken.computeIfAbsent(mode.toString(), m -> new LinkedHashMap<>()).put(n, r[2] / n * 1e6);
        System.out.printf(Locale.ROOT, "%-14s %9d %9.1f %11.1f %9.1f %12.1f %12.0f%n", mode, n, r[0], r[0] / n * 1e6,
            r[2], r[2] / n * 1e6, r[1] / 1024);
      }
    }
    for (var e : perToken.entrySet()) {
      Map<Integer, Double> t = e.getValue();
      Map<Integer, Double> cpu = cpuPerToken.get(e.getKey());
      int first = tokens[0];
      for (int n : tokens) {
        if (n != first && t.containsKey(n) && t.containsKey(first)) {
          System.out.printf(Locale.ROOT, "%s: per-token time %d/%d tokens = %.2fx wall, %.2fx CPU%s%n", e.getKey(), n,
              first, t.get(n) / t.get(first), cpu.get(n) / cpu.get(first),
              e.getKey().startsWith("knn") ? " (target <= 1.5x)" : "");
        }
      }
    }
    return 0;
  }

  /** Runs one read in a child JVM (same JVM options and classpath); returns seconds, VmHWM kB, CPU seconds. */
  private static double[] child(Path model, ReadMemory mode, int n) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), LongBench.class.getName(), model.toString(),
        mode.toString(), Integer.toString(n)));
    Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    String result = null;
    try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line; (line = out.readLine()) != null; ) {
        if (line.startsWith("result ")) {
          result = line;
        }
      }
    }
    int rc = p.waitFor();
    if (rc != 0 || result == null) {
      throw new IllegalStateException("the " + mode + " read of " + n + " tokens failed (child JVM exit " + rc + ")");
    }
    String[] f = result.split(" ");
    return new double[] {Double.parseDouble(f[1]), Double.parseDouble(f[2]), Double.parseDouble(f[3])};
  }

  /** The child: {@code MODEL READ_MEMORY TOKENS}; prints {@code result SECONDS VMHWM_KB CPU_SECONDS}. */
  public static void main(String[] args) throws Exception {
    Path model = Path.of(args[0]);
    ReadMemory mode = ReadMemory.parse(args[1], ReadMemory.DEFAULT_K);
    int n = Integer.parseInt(args[2]);
    try (LongLlama m = LongLlama.load(Checkpoint.open(model), Device.cpu())) {
      int vocab = m.config().vocabSize();
      long[] ids = new SplittableRandom(7).ints(n, 3, vocab).asLongStream().toArray();
      read(m, mode, java.util.Arrays.copyOf(ids, Math.min(n, 2 * m.config().maxPositionEmbeddings()))); // warm-up
      var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
      long cpu = os.getProcessCpuTime();
      long t = System.nanoTime();
      read(m, mode, ids);
      double seconds = (System.nanoTime() - t) / 1e9;
      double cpuSeconds = (os.getProcessCpuTime() - cpu) / 1e9;
      System.out.printf(Locale.ROOT, "result %.3f %d %.3f%n", seconds, vmHwmKb(), cpuSeconds);
    }
  }

  /** The document into memory, window by window (as encode reads it; nothing past the last memory layer). */
  private static void read(LongLlama m, ReadMemory mode, long[] ids) {
    var c = m.config();
    try (LongLlamaCache cache = m.newCache(1, mode.create(m.manager(), 1, c.numHeads(), c.headDim()))) {
      m.forward(cache, new long[][] {ids}, null, false, 0, LongLlama.Output.MEMORY_ONLY, null);
    }
  }

  /** Peak resident set size of this process, kB (Linux /proc/self/status). */
  static long vmHwmKb() throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("VmHWM:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }
}
