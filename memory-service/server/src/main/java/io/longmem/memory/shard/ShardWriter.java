package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import io.longmem.io.FileTrees;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Writes one immutable shard: per memory layer an Arrow IPC file of every token's key and value,
 * and per (layer, head) a FAISS index over the keys whose ids are the rows of that file.
 *
 * <p>Everything goes to a staging directory; {@link #finish} writes the indexes, checksums every
 * file and renames the directory into {@code shards/}. An index that needs training (IVF, PQ) is
 * trained on the first {@code trainingRows} tokens, which are buffered until then; after that
 * keys are added as they come, so memory stays bounded by the training sample. Each layer's file
 * and indexes are a {@link LayerWriter}; this class keeps the shard's documents, rows and directory.
 */
public final class ShardWriter implements AutoCloseable {
  static final int BATCH_ROWS = 4096;

  private final Path collection;
  private final Path staging;
  private final String id;
  private final ShardLayout layout;
  private final String indexFactory;
  private final int trainingRows;
  private final LayerWriter[] layers;
  private final List<Manifest.DocumentEntry> documents = new ArrayList<>();
  private final Set<String> seen = new HashSet<>();
  private String currentDocument;
  private long currentBegin;
  private long rows;
  private boolean finished;

  private final java.util.Map<Integer, FaissIndex[]> templates;

  ShardWriter(Path collection, String id, String attempt, ShardLayout layout, String indexFactory, int trainingRows,
      BufferAllocator allocator, java.util.Map<Integer, FaissIndex[]> templates) throws IOException {
    this.templates = templates;
    if (!id.matches("[A-Za-z0-9._-]+")) {
      throw new IllegalArgumentException("shard id '" + id + "' must be letters, digits, '.', '_' or '-'");
    }
    this.collection = collection;
    this.id = id;
    this.layout = layout;
    this.indexFactory = indexFactory;
    this.trainingRows = trainingRows;
    if (!attempt.matches("[A-Za-z0-9._-]*")) {
      throw new IllegalArgumentException("attempt '" + attempt + "' must be letters, digits, '.', '_' or '-'");
    }
    this.staging = collection.resolve(CollectionWriter.STAGING).resolve(attempt.isEmpty() ? id : id + "." + attempt);
    if (Files.exists(collection.resolve(CollectionWriter.SHARDS).resolve(id))) {
      throw new CollectionException(collection + ": shard " + id + " already exists");
    }
    FileTrees.deleteRecursively(staging); // a leftover of an earlier, interrupted attempt
    Files.createDirectories(staging);
    layers = new LayerWriter[layout.layers().size()];
    try {
      for (int i = 0; i < layers.length; i++) {
        layers[i] = new LayerWriter(layout.layers().get(i), layout, staging, id, indexFactory, trainingRows, templates,
            allocator);
      }
    } catch (IOException | RuntimeException e) {
      close();
      throw e;
    }
  }

  public String id() {
    return id;
  }

  public long rows() {
    return rows;
  }

  /** What every block appended must match: layers (in order), heads, head_dim and storage. */
  public ShardLayout layout() {
    return layout;
  }

  /**
   * Appends what the memory layers read of one document in one call: one head-major block per
   * layer (in layout order), all of the same tokens. A document's tokens must come in one run of
   * calls. Each head's keys go to its FAISS index as the contiguous run the block holds them in.
   */
  public void append(String document, List<MemoryBlock> blocks) throws IOException {
    if (finished) {
      throw new IllegalStateException("shard " + id + " is finished");
    }
    if (blocks.size() != layers.length) {
      throw new IllegalArgumentException(blocks.size() + " blocks, the layout has " + layers.length + " layers");
    }
    int[] positions = blocks.get(0).positions();
    for (int l = 0; l < layers.length; l++) {
      MemoryBlock b = blocks.get(l);
      String what = "block of layer " + b.layer();
      if (b.layer() != layout.layers().get(l)) {
        throw new IllegalArgumentException(what + " where the layout has layer " + layout.layers().get(l));
      }
      if (b.heads() != layout.heads() || b.headDim() != layout.headDim() || b.storage() != layout.storage()) {
        throw new IllegalArgumentException(what + ": " + b.heads() + " heads x " + b.headDim() + " " + b.storage()
            + ", the layout has " + layout.heads() + " x " + layout.headDim() + " " + layout.storage());
      }
      if (!java.util.Arrays.equals(b.positions(), positions)) {
        throw new IllegalArgumentException(what + ": other positions than the block of layer " + blocks.get(0).layer());
      }
      check(b.keys(), b.keys().length, "keys of layer " + b.layer());
      check(b.values(), b.values().length, "values of layer " + b.layer());
    }
    int n = positions.length;
    if (n == 0) {
      return;
    }
    startDocument(document);
    for (int l = 0; l < layers.length; l++) {
      layers[l].append(document, blocks.get(l), rows);
    }
    rows += n;
  }

  private void startDocument(String document) {
    if (document == null || document.isEmpty()) {
      throw new IllegalArgumentException("document id is empty");
    }
    if (!document.equals(currentDocument)) {
      if (!seen.add(document)) {
        throw new IllegalArgumentException("document " + document + " was already written to shard " + id
            + "; its tokens must be appended in one run");
      }
      closeDocument();
      currentDocument = document;
      currentBegin = rows;
    }
  }

  private static void check(float[] a, long expected, String what) {
    if (a == null || a.length != expected) {
      throw new IllegalArgumentException(what + ": " + (a == null ? 0 : a.length) + " floats, expected " + expected);
    }
    for (int i = 0; i < a.length; i++) {
      if (!Float.isFinite(a[i])) {
        throw new IllegalArgumentException(what + ": element " + i + " is " + a[i]);
      }
    }
  }

  private void closeDocument() {
    if (currentDocument != null && rows > currentBegin) {
      documents.add(new Manifest.DocumentEntry(currentDocument, currentBegin, rows));
    }
  }

  /** Writes indexes, checksums every file and moves the shard into place; returns its entry. */
  public Manifest.ShardEntry finish() throws IOException {
    if (finished) {
      throw new IllegalStateException("shard " + id + " is finished");
    }
    if (rows == 0) {
      throw new IllegalStateException("shard " + id + " is empty");
    }
    closeDocument();
    for (LayerWriter w : layers) {
      w.finish();
    }
    finished = true;
    Path target = collection.resolve(CollectionWriter.SHARDS).resolve(id);
    Files.createDirectories(target.getParent());
    Manifest.ShardEntry entry = new Manifest.ShardEntry();
    entry.id = id;
    entry.rows = rows;
    entry.documents.addAll(documents);
    try (var files = Files.list(staging)) {
      for (Path f : files.sorted().toList()) {
        entry.files.add(new Manifest.FileEntry(
            CollectionWriter.SHARDS + "/" + id + "/" + f.getFileName(), Files.size(f), FileTrees.sha256(f)));
      }
    }
    Manifest.writeShardRecord(staging, entry);
    try {
      Files.move(staging, target, StandardCopyOption.ATOMIC_MOVE);
    } catch (java.nio.file.FileSystemException e) {
      // Another attempt of the same shard (a retried or speculative task) got there first. Its
      // directory arrived whole by rename, so it is complete: keep it, drop this copy.
      if (!Files.isDirectory(target)) {
        throw e;
      }
      FileTrees.deleteRecursively(staging);
      return Manifest.readShardRecord(target);
    }
    return entry;
  }

  /** Abandons an unfinished shard: its staging directory is removed. */
  @Override
  public void close() throws IOException {
    for (LayerWriter w : layers) {
      if (w != null) {
        w.close();
      }
    }
    if (!finished) {
      FileTrees.deleteRecursively(staging);
    }
  }
}
