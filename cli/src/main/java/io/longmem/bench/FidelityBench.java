package io.longmem.bench;

import io.longmem.memory.service.InProcessNode;
import io.longmem.memory.api.Wire;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.longmem.encode.DocumentEncoder;
import io.longmem.memory.grpc.HeadResult;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.jobs.encode.ShardEncoder;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.LongLlama;
import io.longmem.model.LongLlamaCache;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.RandomCheckpoint;
import io.longmem.model.memory.DenseMemory;
import io.longmem.model.memory.ForwardingMemory;
import io.longmem.model.memory.Memory;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * {@code bin/longmem bench fidelity}: how far kNN memory is from dense memory. A document is read
 * into an exact (Flat) and an approximate collection; a question is then read with dense memory
 * (the reference) and with top-k memory from each collection. Reported per k: recall@k of the
 * approximate search against the exact one on the queries the model actually issued, and the KL
 * divergence of the next-token distributions (dense || kNN) over the question's positions.
 */
public final class FidelityBench {
  private FidelityBench() {}

  /** What to measure. */
  public record Options(Path dir, Path model, int documentTokens, int questionTokens, int[] ks, String index, int nprobe)
      {}

  public static void run(Options o) throws Exception {
    Files.createDirectories(o.dir());
    Path modelDir = o.model();
    if (modelDir == null) {
      modelDir = o.dir().resolve("model");
      if (!Files.exists(modelDir.resolve("config.json"))) {
        RandomCheckpoint.write(modelDir, new RandomCheckpoint.Shape(32000, 256, 8, 688, 4, 512, 256, new int[] {1, 2}), 17);
      }
    }
    Checkpoint ckpt = Checkpoint.open(modelDir);
    SplittableRandom r = new SplittableRandom(21);
    long[] doc = r.longs(o.documentTokens(), 3, ckpt.config().vocabSize()).toArray();
    doc[0] = 1;
    long[] question = r.longs(o.questionTokens(), 3, ckpt.config().vocabSize()).toArray();
    String text = "random tokens";
    if (o.model() != null && ckpt.tokenizerModel() != null) {
      // a model that was trained (and has its tokenizer): what it was trained for, a passkey haystack and its question
      var tok = io.longmem.model.tokenizer.SentencePieceTokenizer.load(ckpt.tokenizerModel());
      doc = io.longmem.passkey.Haystack.make(tok, o.documentTokens(), new java.util.Random(21)).ids(tok);
      question = io.longmem.passkey.Haystack.question(tok);
      text = "a passkey haystack and its question";
    }
    try (LongLlama model = LongLlama.load(ckpt, Device.cpu())) {
      Path exact = o.dir().resolve("exact");
      Path approx = o.dir().resolve("approx");
      write(model, ckpt, exact, "Flat", doc);
      write(model, ckpt, approx, o.index(), doc);
      float[] dense = questionLogits(model, new DenseMemory(model.manager()), doc, question);
      Map<String, Path> colls = new LinkedHashMap<>();
      colls.put("exact", exact);
      colls.put("approx", approx);
      int vocab = model.config().vocabSize();
      System.out.printf(Locale.ROOT, "bench fidelity: model %s (%d layers, memory %s, %d heads x %d), document %d tokens, "
          + "question %d tokens (%s); approximate index %s, nprobe %d%n", modelDir, model.config().numLayers(),
          model.config().memLayers(), model.config().numHeads(), model.config().headDim(), doc.length, question.length,
          text, o.index(), o.nprobe());
      try (MemoryEndpoint endpoint = InProcessNode.open(colls, ckpt.fingerprint())) {
        for (int k : o.ks()) {
          StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "k=%-4d", k));
          float[] ex = questionLogits(model, new ServiceMemory(endpoint, new ServiceMemory.Options(List.of("exact"),
              List.of(), k, 0, 0, 600_000, 1), model.config(), ckpt.fingerprint(), 1), null, question);
          double[] klExact = kl(dense, ex, vocab);
          line.append(String.format(Locale.ROOT, " exact kNN: KL mean %.2e max %.2e |", klExact[0], klExact[1]));
          for (int refine : new int[] {1, 16}) {
            Capture cap = new Capture(new ServiceMemory(endpoint, new ServiceMemory.Options(List.of("approx"), List.of(),
                k, o.nprobe(), refine, 600_000, 1), model.config(), ckpt.fingerprint(), 1));
            float[] ap = questionLogits(model, cap, null, question);
            double[] klApprox = kl(dense, ap, vocab);
            double recall = recall(endpoint, cap, k, o.nprobe(), refine, model.config().numHeads(),
                model.config().headDim());
            line.append(String.format(Locale.ROOT, " %s refine %d: recall@%d %.3f, KL mean %.2e max %.2e |",
                o.index(), refine, k, recall, klApprox[0], klApprox[1]));
          }
          System.out.println(line);
        }
      }
    }
  }

  private static void write(LongLlama model, Checkpoint ckpt, Path dir, String factory, long[] doc) throws Exception {
    if (Files.exists(dir.resolve(Manifest.FILE))) {
      return;
    }
    LongLlamaConfig c = model.config();
    ShardLayout layout = ShardEncoder.layout(c);
    try (CollectionWriter w = CollectionWriter.create(dir, ckpt.fingerprint(), layout, c.memDType().pythonName(),
        factory).trainingRows(doc.length)) {
      Manifest.ShardEntry e;
      try (ShardWriter s = w.newShard("shard-00000")) {
        s.append("doc", new DocumentEncoder(model).encode(doc));
        e = s.finish();
      }
      w.commit(List.of(e));
    }
  }

  /** Next-token logits at each question position, the document in memory (read here when given). */
  private static float[] questionLogits(LongLlama model, Memory memory, long[] doc, long[] question) {
    try (LongLlamaCache cache = model.newCache(1, memory); NDManager out = NDManager.newBaseManager()) {
      if (doc != null) {
        model.forward(cache, new long[][] {doc}, null, false, 0, LongLlama.Output.MEMORY_ONLY, null);
      }
      NDArray logits = model.forward(cache, new long[][] {question}, null, true, question.length,
          LongLlama.Output.ALL_LOGITS, out);
      return logits.toFloatArray();
    }
  }

  /** Mean and max over positions of KL(p || q) between softmaxes of two [positions, vocab] logit tables. */
  static double[] kl(float[] p, float[] q, int vocab) {
    int n = p.length / vocab;
    double sum = 0;
    double max = 0;
    for (int t = 0; t < n; t++) {
      double[] lp = logSoftmax(p, t * vocab, vocab);
      double[] lq = logSoftmax(q, t * vocab, vocab);
      double d = 0;
      for (int v = 0; v < vocab; v++) {
        d += Math.exp(lp[v]) * (lp[v] - lq[v]);
      }
      sum += d;
      max = Math.max(max, d);
    }
    return new double[] {sum / n, max};
  }

  private static double[] logSoftmax(float[] x, int off, int n) {
    double m = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < n; i++) {
      m = Math.max(m, x[off + i]);
    }
    double s = 0;
    for (int i = 0; i < n; i++) {
      s += Math.exp(x[off + i] - m);
    }
    double log = m + Math.log(s);
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      out[i] = x[off + i] - log;
    }
    return out;
  }

  /** Recall@k of the approximate collection against the exact one, on the captured queries. */
  private static double recall(MemoryEndpoint endpoint, Capture cap, int k, int nprobe, int refine, int heads, int dim) {
    long hit = 0;
    long total = 0;
    for (Capture.Call c : cap.calls) {
      int q = c.queries().length / (heads * dim);
      SearchResponse a = search(endpoint, "approx", c, q, k, nprobe, refine, heads, dim);
      SearchResponse e = search(endpoint, "exact", c, q, k, 0, 0, heads, dim);
      for (int h = 0; h < heads; h++) {
        List<Set<Integer>> ap = ids(a.getHeads(h), q, k);
        List<Set<Integer>> ex = ids(e.getHeads(h), q, k);
        for (int i = 0; i < q; i++) {
          Set<Integer> s = new HashSet<>(ex.get(i));
          total += s.size();
          s.retainAll(ap.get(i));
          hit += s.size();
        }
      }
    }
    return hit / (double) Math.max(1, total);
  }

  private static SearchResponse search(MemoryEndpoint endpoint, String coll, Capture.Call c, int q, int k, int nprobe,
      int refine, int heads, int dim) {
    return endpoint.stub().withDeadlineAfter(10, TimeUnit.MINUTES).search(SearchRequest.newBuilder().addCollections(coll)
        .setLayer(c.layer()).setHeads(heads).setQueries(q).setHeadDim(dim).setK(k).setNprobe(nprobe).setRefine(refine)
        .setQuery(Wire.bytes(c.queries(), c.queries().length)).build());
  }

  /** Per query, the token positions chosen (one document: the position identifies the pair). */
  private static List<Set<Integer>> ids(HeadResult h, int q, int k) {
    int[] slots = Wire.ints(h.getSlots());
    int[] pos = Wire.ints(h.getPairPosition());
    List<Set<Integer>> out = new ArrayList<>();
    for (int i = 0; i < q; i++) {
      Set<Integer> s = new HashSet<>();
      for (int j = 0; j < k; j++) {
        int slot = slots[i * k + j];
        if (slot >= 0) {
          s.add(pos[slot]);
        }
      }
      out.add(s);
    }
    return out;
  }

  /** Memory that remembers the queries it was asked. */
  private static final class Capture extends ForwardingMemory {
    record Call(int layer, float[] queries) {}

    final List<Call> calls = new ArrayList<>();

    Capture(Memory inner) {
      super(inner);
    }

    @Override
    public Retrieved retrieve(int layer, NDArray queries) {
      calls.add(new Call(layer, queries.toFloatArray()));
      return inner.retrieve(layer, queries);
    }
  }
}
