package io.longmem.bench;

import ai.djl.Device;
import io.longmem.io.InputException;
import io.longmem.jobs.encode.Corpus;
import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.encode.EncodeSpec;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.Memory;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.passkey.Haystack;
import io.longmem.passkey.Passkey;
import io.longmem.retrieve.ServiceMemory;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.apache.spark.sql.SparkSession;

/**
 * {@code bin/longmem bench passkey}: passkey accuracy of a model whose memory comes from served
 * collections. Per size, the trials' haystacks are Spark-encoded into an exact (Flat) and an
 * approximate (IVF-PQ) collection served over gRPC on loopback; each question is asked with top-k
 * memory from each, and beside them, in the same run, with dense memory in process (where it
 * fits) and with the memory layers cut off from memory (the same model, no memory: chance).
 *
 * <p>Above {@code --full-budget} tokens of haystacks per size, the trials share one filler
 * document and each adds a small document holding its key line in filler: memory has no order
 * (every pair is positioned as if first) and a window's pairs depend only on its own tokens in a
 * model with one memory layer, so the memory a trial searches is that of a haystack of that size,
 * up to where the key line falls in its window. The output says which layout each size used.
 */
public final class PasskeyBench {
  private PasskeyBench() {}

  /** Largest filler document of the shared layout. */
  static final long FILLER_DOCUMENT = 1L << 20;

  /** What to measure. */
  public record Options(Path dir, Path model, long[] sizes, int[] trials, int topK, String index, int nprobe,
      int refine, long denseMax, long fullBudget, int parallelism, long seed) {
    public Options {
      if (sizes.length == 0 || trials.length == 0) {
        throw new InputException("--sizes and --trials need at least one value");
      }
      if (trials.length != 1 && trials.length != sizes.length) {
        throw new InputException("--trials takes one count or one per size (" + sizes.length + " sizes)");
      }
      for (long s : sizes) {
        if (s < 256) {
          throw new InputException("--sizes must be >= 256 tokens, got " + s);
        }
      }
      for (int t : trials) {
        if (t < 1) {
          throw new InputException("--trials must be >= 1, got " + t);
        }
      }
    }

    int trialsAt(int i) {
      return trials.length == 1 ? trials[0] : trials[i];
    }
  }

  /** A trial: its haystack and the documents of the collection that make it up. */
  private record Trial(Haystack haystack, List<String> documents) {}

  public static void run(Options o) throws Exception {
    Files.createDirectories(o.dir());
    Checkpoint ckpt = Checkpoint.open(o.model());
    if (ckpt.tokenizerModel() == null) {
      throw new InputException("bench passkey needs a checkpoint with its tokenizer.model: " + o.model());
    }
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(ckpt.tokenizerModel());
    try (LongLlama model = LongLlama.load(ckpt, Device.cpu())) {
      var c = model.config();
      System.out.printf(Locale.ROOT, "bench passkey: model %s (%d layers, memory layers %s, %d heads x %d, window %d); "
          + "top-%d pairs per head and query over gRPC; exact = Flat, approximate = %s nprobe %d refine %d%n",
          o.model(), c.numLayers(), c.memLayers(), c.numHeads(), c.headDim(), c.maxPositionEmbeddings(), o.topK(),
          o.index(), o.nprobe(), o.refine());
      List<String> rows = new ArrayList<>();
      for (int i = 0; i < o.sizes().length; i++) {
        rows.add(size(o, model, ckpt, tok, o.sizes()[i], o.trialsAt(i), new Random(o.seed() + i)));
      }
      System.out.println();
      System.out.println("| tokens | trials | layout | exact (Flat) | approximate | dense in process | no memory | "
          + "encode tokens/s | answer s (exact) |");
      System.out.println("|---|---|---|---|---|---|---|---|---|");
      rows.forEach(System.out::println);
    }
  }

  private static String size(Options o, LongLlama model, Checkpoint ckpt, SentencePieceTokenizer tok, long size,
      int trials, Random random) throws Exception {
    Path dir = o.dir().resolve("size-" + size);
    Files.createDirectories(dir);
    boolean shared = (double) trials * size > o.fullBudget();
    List<Trial> list = new ArrayList<>();
    Path corpus = dir.resolve("corpus.jsonl");
    long corpusTokens = 0;
    int fillerDocuments = 0;
    Path partial = dir.resolve("corpus.jsonl.tmp");
    try (BufferedWriter w = Files.newBufferedWriter(partial, StandardCharsets.UTF_8)) {
      List<String> fillers = new ArrayList<>();
      if (shared) {
        // in documents of at most FILLER_DOCUMENT tokens: a read holds its document's memory in process
        // n documents of equal length (whole filler sentences: a few tokens short of the size in all)
        long left = size - keyDocumentTokens(tok);
        fillerDocuments = (int) Math.max(1, (left + FILLER_DOCUMENT - 1) / FILLER_DOCUMENT);
        for (int f = 0; f < fillerDocuments; f++) {
          long[] filler = fillerDocument(tok, left / fillerDocuments, f == 0);
          write(w, "filler-" + f, filler);
          fillers.add("filler-" + f);
          corpusTokens += filler.length;
        }
      }
      for (int t = 0; t < trials; t++) {
        Haystack h = Haystack.make(tok, size, random);
        String id = "trial-" + t;
        long[] ids = shared ? keyDocument(tok, h.key(), random) : h.ids(tok);
        write(w, id, ids);
        corpusTokens += ids.length;
        List<String> docs = new ArrayList<>(fillers);
        docs.add(id);
        list.add(new Trial(h, docs));
      }
    }
    Files.move(partial, corpus, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
        java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    // an index is trained per shard: small corpora in one shard, large ones in one per Spark task;
    // documents go to shards by id hash, so shared filler makes at most one shard per filler
    // document (else a shard of key documents alone would have too few keys to train an IVF index)
    int shards = corpusTokens < 262_144 ? 1 : shared ? Math.min(o.parallelism(), fillerDocuments)
        : o.parallelism();
    String approxFactory = o.index().equals("auto") ? autoIndex(corpusTokens / shards) : o.index();
    System.out.printf(Locale.ROOT, "size %,d: %d trials, %s; %,d tokens to encode per collection%n", size, trials,
        shared ? "shared filler documents + one key document per trial" : "one haystack document per trial",
        corpusTokens);
    double exactRate = encode(o, corpus, dir.resolve("exact"), "Flat", corpusTokens, shards);
    encode(o, corpus, dir.resolve("approx"), approxFactory, corpusTokens, shards);

    ServiceConfig conf = new ServiceConfig();
    conf.port = 0;
    conf.collections.put("exact", dir.resolve("exact").toString());
    conf.collections.put("approx", dir.resolve("approx").toString());
    int[] right = new int[4];
    int denseTrials = 0;
    double exactSeconds = 0;
    try (MemoryServer server = MemoryServer.start(conf);
         MemoryEndpoint endpoint = MemoryEndpoint.remote("grpc://127.0.0.1:" + server.port())) {
      // top-k pairs from one served collection, restricted to the trial's documents
      java.util.function.BiFunction<String, Trial, Memory> served = (name, t) -> new ServiceMemory(endpoint,
          new ServiceMemory.Options(List.of(name), t.documents(), o.topK(), name.equals("exact") ? 0 : o.nprobe(),
              name.equals("exact") ? 0 : o.refine(), 600_000, 1), model.config(), ckpt.fingerprint(), 1);
      for (int t = 0; t < list.size(); t++) {
        Trial trial = list.get(t);
        int key = trial.haystack().key();
        Haystack.Answer ex = Haystack.ask(model, tok, served.apply("exact", trial), null);
        exactSeconds += ex.seconds();
        Haystack.Answer ap = Haystack.ask(model, tok, served.apply("approx", trial), null);
        Haystack.Answer none = Haystack.ask(model, tok, new DenseMemory(model.manager()), null);
        String dense = "-";
        if (size <= o.denseMax()) {
          Haystack.Answer d = Haystack.ask(model, tok, new DenseMemory(model.manager()), trial.haystack().ids(tok));
          right[2] += d.key() == key ? 1 : 0;
          denseTrials++;
          dense = d.text();
        }
        right[0] += ex.key() == key ? 1 : 0;
        right[1] += ap.key() == key ? 1 : 0;
        right[3] += none.key() == key ? 1 : 0;
        System.out.printf(Locale.ROOT, "  size %,d trial %d: key %d at depth %.0f%%: exact '%s', approximate '%s', "
            + "dense '%s', no memory '%s'%n", size, t + 1, key, 100 * trial.haystack().depth(), ex.text(), ap.text(),
            dense, none.text());
      }
    }
    return String.format(Locale.ROOT, "| %,d | %d | %s | %s | %s | %s | %s | %.0f | %.2f |", size, trials,
        shared ? "shared filler" : "haystack per trial", pct(right[0], trials), pct(right[1], trials) + " ("
            + approxFactory + ")", denseTrials == 0 ? "not run (above --dense-max-tokens)" : pct(right[2], denseTrials),
        pct(right[3], trials), exactRate, exactSeconds / trials);
  }

  private static String pct(int right, int of) {
    return String.format(Locale.ROOT, "%.1f%% (%d/%d)", 100.0 * right / of, right, of);
  }

  /** IVF lists for about 64 keys each, at least 16 and at most 4096; PQ16 codes. */
  static String autoIndex(long rows) {
    long lists = Long.highestOneBit(Math.max(16, Math.min(4096, rows / 64)));
    return "IVF" + lists + ",PQ16";
  }

  /** Encodes the corpus into a new collection with the Spark job (local[parallelism]); returns tokens/s. */
  private static double encode(Options o, Path corpus, Path out, String factory, long tokens,
      int shards) throws Exception {
    io.longmem.io.FileTrees.deleteRecursively(out);
    long t0 = System.nanoTime();
    try (SparkSession spark = SparkSession.builder().master("local[" + o.parallelism() + "]")
        .appName("bench passkey").config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()) {
      EncodeJob.Report r = EncodeJob.run(spark, new EncodeSpec(o.model().toAbsolutePath().toString(), null, null,
          factory, 262_144, shards, 4, 16384, 1, new Corpus.Spec(corpus.toString(), Corpus.Format.JSONL, "id",
          "text", "token_ids")), out, false, 30);
      double s = (System.nanoTime() - t0) / 1e9;
      System.out.printf(Locale.ROOT, "  encode %s (%s): %s%n", out.getFileName(), factory, r.summary());
      return tokens / s;
    }
  }

  private static void write(BufferedWriter w, String id, long[] ids) throws IOException {
    StringBuilder s = new StringBuilder(ids.length * 6 + 32);
    s.append("{\"id\":\"").append(id).append("\",\"token_ids\":[");
    for (int i = 0; i < ids.length; i++) {
      s.append(i == 0 ? "" : ",").append(ids[i]);
    }
    w.write(s.append("]}\n").toString());
  }

  /** The haystack without its key line: BOS, the task line (first part only), filler; about {@code tokens} tokens. */
  static long[] fillerDocument(SentencePieceTokenizer tok, long tokens, boolean first) {
    int[] head = tok.encodeWithBos(first ? Passkey.TASK + "\n" + Passkey.FILLER : Passkey.FILLER);
    int[] filler = tok.encode(" " + Passkey.FILLER);
    long repeats = Math.max(0, (tokens - head.length) / filler.length);
    long[] out = new long[(int) Math.min(Integer.MAX_VALUE - 8, head.length + repeats * filler.length)];
    for (int i = 0; i < head.length; i++) {
      out[i] = head[i];
    }
    for (int i = head.length; i < out.length; i++) {
      out[i] = filler[(i - head.length) % filler.length];
    }
    return out;
  }

  /**
   * A key line in filler as a haystack holds it: two to five filler sentences before it (more
   * than a window of the small models, so the window it falls in, at a random place, is filler
   * and key line as in a haystack, not the document's first after BOS) and three after; no BOS,
   * as the middle of a haystack has none.
   */
  static long[] keyDocument(SentencePieceTokenizer tok, int key, Random random) {
    int before = 2 + random.nextInt(4);
    String text = Passkey.fillers(before) + "\n" + Passkey.keyLine(key) + "\n" + Passkey.fillers(3);
    return java.util.Arrays.stream(tok.encode(text)).asLongStream().toArray();
  }

  private static long keyDocumentTokens(SentencePieceTokenizer tok) {
    return keyDocument(tok, 12345, new Random(0)).length;
  }
}
