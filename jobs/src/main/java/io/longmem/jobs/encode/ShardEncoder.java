package io.longmem.jobs.encode;

import io.longmem.encode.DocumentEncoder;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import io.longmem.memory.shard.ShardWriter;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The encoding loop of one shard, the same in a Spark task and in a plain process: documents in
 * id order (duplicates of an id adjacent, the first kept), tokenized, read by the model a batch at
 * a time, their memory appended to one shard. A shard already committed (by an earlier run, or by
 * an earlier attempt of this one) is not encoded again.
 */
public final class ShardEncoder {
  private static final Logger LOG = LoggerFactory.getLogger(ShardEncoder.class);

  /**
   * One input document. {@code tokenIds} wins over {@code text} when both are given; {@code badId}:
   * its id has no exact string ({@link DocumentIds}), so it is skipped.
   */
  public record Document(String id, String text, long[] tokenIds, boolean badUtf8, boolean malformed, boolean badId) {
    public Document(String id, String text, long[] tokenIds, boolean badUtf8, boolean malformed) {
      this(id, text, tokenIds, badUtf8, malformed, false);
    }

    /** Input size for progress: characters of text, or tokens of pre-tokenized documents. */
    long units() {
      return tokenIds != null ? tokenIds.length : text != null ? text.length() : 0;
    }
  }

  /** What happened to the documents of a shard (or of a whole run, summed). */
  public record Counts(long documents, long tokens, long empty, long duplicates, long badUtf8, long malformed,
      long missingId, long rejected, long badId) implements Serializable {
    public static final Counts ZERO = new Counts(0, 0, 0, 0, 0, 0, 0, 0, 0);

    public Counts plus(Counts o) {
      return new Counts(documents + o.documents, tokens + o.tokens, empty + o.empty, duplicates + o.duplicates,
          badUtf8 + o.badUtf8, malformed + o.malformed, missingId + o.missingId, rejected + o.rejected,
          badId + o.badId);
    }
  }

  /**
   * A shard's outcome: its entry (null when no document had tokens), counts, and whether it was
   * found committed (by an earlier run, or by an earlier attempt of this one whose executor was lost).
   */
  public record Result(String shard, Manifest.ShardEntry entry, Counts counts, boolean resumed) implements Serializable {}

  /** Where finished documents are reported as they happen (Spark accumulators, or a plain counter). */
  public interface Progress extends Serializable {
    void add(long documents, long tokens, long units);
  }

  private final EncodeSpec spec;
  private final Path output;
  private final HadoopOutput remote;
  private final String fingerprint;

  public ShardEncoder(EncodeSpec spec, Path output, String fingerprint) {
    this(spec, output, null, fingerprint);
  }

  /** An encoder into a Hadoop filesystem: shards are written locally, then uploaded and committed. */
  ShardEncoder(EncodeSpec spec, HadoopOutput output, String fingerprint) {
    this(spec, null, output, fingerprint);
  }

  private ShardEncoder(EncodeSpec spec, Path output, HadoopOutput remote, String fingerprint) {
    this.spec = spec;
    this.output = output;
    this.remote = remote;
    this.fingerprint = fingerprint;
  }

  public static String shardId(int index) {
    return String.format("shard-%05d", index);
  }

  /**
   * Encodes the documents of shard {@code index}.
   *
   * @param attempt names this attempt's staging directory (Spark's task attempt id), so that two
   *     attempts of one shard never write the same files
   */
  public Result encode(int index, Iterator<Document> docs, String attempt, Progress progress) throws IOException {
    String id = shardId(index);
    Optional<Manifest.ShardEntry> done = remote != null ? remote.finishedShard(id) : CollectionWriter.finishedShard(output, id);
    if (done.isPresent()) {
      Counts c = skim(docs, progress);
      LOG.info("{}: already committed by an earlier run or attempt ({} documents, {} tokens), not encoded again", id,
          done.get().documents().size(), done.get().rows());
      return new Result(id, done.get(), c, true);
    }
    if (remote == null) {
      return encode(id, output, docs, attempt, progress);
    }
    // A Hadoop filesystem: the shard is written to a local directory of its own, then uploaded.
    Path local = java.nio.file.Files.createTempDirectory("longmem-" + id + "-");
    try {
      Result r = encode(id, local, docs, attempt, progress);
      if (r.entry() == null) {
        return r;
      }
      Manifest.ShardEntry committed = remote.commitShard(id, attempt,
          local.resolve(r.entry().dir()), r.entry());
      return new Result(id, committed, r.counts(), false);
    } finally {
      io.longmem.io.FileTrees.deleteRecursively(local);
    }
  }

  private Result encode(String id, Path output, Iterator<Document> docs, String attempt, Progress progress)
      throws IOException {
    ExecutorModel m = ExecutorModel.get(spec);
    DocumentEncoder encoder = m.encoder(io.longmem.model.memory.ReadMemory.parse(spec.readMemory(), 0));
    ShardLayout layout = layout(m.config());
    try (CollectionWriter collection = CollectionWriter.create(output, fingerprint, layout,
        m.config().memDType().pythonName(), spec.indexFactory()).trainingRows(spec.trainingRows());
         ShardWriter shard = collection.newShard(id, attempt)) {
      Loop loop = new Loop(encoder, m.tokenizer(), m.config(), shard, progress, id);
      while (docs.hasNext()) {
        loop.add(docs.next());
      }
      loop.flush();
      Counts counts = loop.counts();
      if (shard.rows() == 0) {
        return new Result(id, null, counts, false);
      }
      Manifest.ShardEntry entry = shard.finish();
      LOG.info(String.format(java.util.Locale.ROOT, "%s: %d documents, %d tokens (model %.1f s, writing %.1f s)", id,
          counts.documents(), counts.tokens(), loop.modelNanos / 1e9, loop.writeNanos / 1e9));
      return new Result(id, entry, counts, false);
    }
  }

  /** The shard layout of a model's memory: its memory layers, heads and head_dim, stored as mem_dtype says. */
  public static ShardLayout layout(LongLlamaConfig c) {
    return new ShardLayout(c.memLayers(), c.numHeads(), c.headDim(), c.memDType().storage());
  }

  /** Counts a finished shard's documents without reading them with the model. */
  private static Counts skim(Iterator<Document> docs, Progress progress) {
    Screen screen = new Screen(null);
    long units = 0;
    while (docs.hasNext()) {
      Document d = docs.next();
      units += d.units();
      screen.admit(d);
    }
    progress.add(0, 0, units);
    return screen.counts(0, 0, 0);
  }

  /**
   * What every document passes before the model reads it, and the counts of those that do not:
   * malformed records, missing ids, ids without an exact string (before the duplicate check, so a
   * valid id is never dropped as a repeat of an undecodable one), repeated ids (the first one read
   * is kept), empty documents; undecodable bytes in the text are counted and the document is read.
   */
  private static final class Screen {
    private final String shardId; // null: count silently (a finished shard skimmed again)
    private String previous;
    private long empty;
    private long duplicates;
    private long badUtf8;
    private long malformed;
    private long missingId;
    private long badId;

    Screen(String shardId) {
      this.shardId = shardId;
    }

    /** True when the model should read the document. */
    boolean admit(Document d) {
      if (d.malformed()) {
        malformed++;
        return false;
      }
      if (d.id() == null || d.id().isBlank()) {
        missingId++;
        return false;
      }
      if (d.badId()) {
        badId++;
        if (shardId != null) {
          LOG.warn("{}: document id '{}' is not an exact string (undecodable bytes or a lone surrogate): skipped",
              shardId, d.id());
        }
        return false;
      }
      if (d.id().equals(previous)) {
        duplicates++;
        if (shardId != null) {
          LOG.warn("{}: duplicate document id '{}': the first one read is kept", shardId, d.id());
        }
        return false;
      }
      previous = d.id();
      if (d.badUtf8()) {
        badUtf8++;
        if (shardId != null) {
          LOG.warn("{}: document '{}' is not valid UTF-8: undecodable bytes read as U+FFFD", shardId, d.id());
        }
      }
      if (isEmpty(d)) {
        empty++;
        return false;
      }
      return true;
    }

    Counts counts(long documents, long tokens, long rejected) {
      return new Counts(documents, tokens, empty, duplicates, badUtf8, malformed, missingId, rejected, badId);
    }
  }

  static boolean isEmpty(Document d) {
    return d.tokenIds() != null ? d.tokenIds().length == 0 : d.text() == null || d.text().isBlank();
  }

  /** Filters, tokenizes and batches documents; appends each batch's memory to the shard. */
  private final class Loop {
    private final DocumentEncoder encoder;
    private final SentencePieceTokenizer tokenizer;
    private final LongLlamaConfig config;
    private final ShardWriter shard;
    private final Progress progress;
    private final String shardId;
    private final List<Pending> pending = new ArrayList<>();
    private final Screen screen;
    private long documents;
    private long tokens;
    private long rejected;
    /** Time in the model (reading documents into memory) and in writing its pairs to the shard. */
    private long modelNanos;
    private long writeNanos;

    private final long started = System.nanoTime();
    private long lastLog = started;

    private record Pending(String id, long[] ids, long units) {}

    Loop(DocumentEncoder encoder, SentencePieceTokenizer tokenizer, LongLlamaConfig config, ShardWriter shard,
        Progress progress, String shardId) {
      this.encoder = encoder;
      this.tokenizer = tokenizer;
      this.config = config;
      this.shard = shard;
      this.progress = progress;
      this.shardId = shardId;
      this.screen = new Screen(shardId);
    }

    void add(Document d) throws IOException {
      if (!screen.admit(d)) {
        progress.add(0, 0, d.units());
        return;
      }
      long[] ids = d.tokenIds();
      if (ids == null) {
        if (tokenizer == null) {
          throw new IllegalStateException("document '" + d.id() + "' is text but no tokenizer is available");
        }
        int[] t = tokenizer.encodeWithBos(d.text());
        ids = new long[t.length];
        for (int i = 0; i < t.length; i++) {
          ids[i] = t[i];
        }
      }
      int outside = config.outsideVocabulary(ids);
      if (outside >= 0) {
        rejected++;
        LOG.warn("{}: document '{}' rejected: token id {} at position {} is outside the model's vocabulary [0, {})",
            shardId, d.id(), ids[outside], outside, config.vocabSize());
        progress.add(0, 0, d.units());
        return;
      }
      pending.add(new Pending(d.id(), ids, d.units()));
      if (pending.size() >= spec.batchSize() * 8) {
        drain(false);
      }
    }

    void flush() throws IOException {
      drain(true);
    }

    /** Encodes buffered documents longest first, in batches capped by size and padded tokens. */
    private void drain(boolean all) throws IOException {
      pending.sort(Comparator.comparingInt((Pending p) -> -p.ids().length)); // stable: ties keep id order
      int keep = all ? 0 : pending.size() % spec.batchSize();
      int i = 0;
      while (i < pending.size() - keep) {
        int longest = pending.get(i).ids().length;
        int j = i + 1;
        while (j < pending.size() && j - i < spec.batchSize() && (long) (j - i + 1) * longest <= spec.maxBatchTokens()) {
          j++;
        }
        List<Pending> batch = pending.subList(i, j);
        List<long[]> ids = new ArrayList<>();
        batch.forEach(p -> ids.add(p.ids()));
        long t0 = System.nanoTime();
        List<List<MemoryBlock>> encoded = encoder.encodeBatch(ids);
        modelNanos += System.nanoTime() - t0;
        for (int b = 0; b < batch.size(); b++) {
          Pending p = batch.get(b);
          List<MemoryBlock> blocks = encoded.get(b);
          int n = blocks.get(0).tokens();
          long w0 = System.nanoTime();
          shard.append(p.id(), blocks);
          writeNanos += System.nanoTime() - w0;
          documents++;
          tokens += n;
          progress.add(1, n, p.units());
          long now = System.nanoTime();
          if (now - lastLog > 30_000_000_000L) { // a long task says how it goes (the driver hears at its end)
            lastLog = now;
            LOG.info(String.format(java.util.Locale.ROOT, "%s: %d documents, %d tokens so far, %.0f tokens/s", shardId,
                documents, tokens, tokens / ((now - started) / 1e9)));
          }
        }
        i = j;
      }
      List<Pending> rest = new ArrayList<>(pending.subList(i, pending.size()));
      pending.clear();
      pending.addAll(rest);
    }

    Counts counts() {
      return screen.counts(documents, tokens, rejected);
    }
  }
}
