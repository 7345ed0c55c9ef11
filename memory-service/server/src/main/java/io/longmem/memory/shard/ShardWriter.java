package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import io.longmem.io.FileTrees;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float2Vector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.FixedSizeListVector;
import org.apache.arrow.vector.ipc.ArrowFileWriter;

/**
 * Writes one immutable shard: per memory layer an Arrow IPC file of every token's key and value,
 * and per (layer, head) a FAISS index over the keys whose ids are the rows of that file.
 *
 * <p>Everything goes to a staging directory; {@link #finish} writes the indexes, checksums every
 * file and renames the directory into {@code shards/}. An index that needs training (IVF, PQ) is
 * trained on the first {@code trainingRows} tokens, which are buffered until then; after that
 * keys are added as they come, so memory stays bounded by the training sample.
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
        layers[i] = new LayerWriter(layout.layers().get(i), allocator);
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

  /**
   * Appends n tokens of one document in token-major layout (older callers; the model's own layout
   * is {@link #append(String, List)}'s). A document's tokens must come in one run of calls.
   *
   * @param positions n positions within the document
   * @param keys per memory layer (in layout order) [n, heads, head_dim] floats
   * @param values likewise
   */
  public void append(String document, int[] positions, float[][] keys, float[][] values) throws IOException {
    if (finished) {
      throw new IllegalStateException("shard " + id + " is finished");
    }
    int n = positions.length;
    if (n == 0) {
      return;
    }
    if (document == null || document.isEmpty()) {
      throw new IllegalArgumentException("document id is empty");
    }
    if (keys.length != layers.length || values.length != layers.length) {
      throw new IllegalArgumentException("keys/values for " + keys.length + "/" + values.length + " layers, the layout has "
          + layers.length);
    }
    long width = layout.width();
    List<MemoryBlock> blocks = new ArrayList<>();
    for (int l = 0; l < layers.length; l++) {
      check(keys[l], n * width, "keys of layer " + layout.layers().get(l));
      check(values[l], n * width, "values of layer " + layout.layers().get(l));
      blocks.add(new MemoryBlock(layout.layers().get(l), document, positions, layout.heads(), layout.headDim(),
          headMajor(keys[l], n), headMajor(values[l], n), layout.storage()));
    }
    append(document, blocks);
  }

  /** [n, heads, dim] as [heads, n, dim]. */
  private float[] headMajor(float[] tokenMajor, int n) {
    int heads = layout.heads();
    int dim = layout.headDim();
    float[] out = new float[tokenMajor.length];
    for (int i = 0; i < n; i++) {
      for (int h = 0; h < heads; h++) {
        System.arraycopy(tokenMajor, (i * heads + h) * dim, out, (h * n + i) * dim, dim);
      }
    }
    return out;
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

  /** One layer: the Arrow file and the per-head FAISS indexes. */
  private final class LayerWriter implements AutoCloseable {
    private final int layer;
    private final VectorSchemaRoot root;
    private final FileChannel channel;
    private final ArrowFileWriter writer;
    private final FaissIndex[] indexes;
    /** Blocks whose keys are buffered until the indexes are trained. */
    private final List<MemoryBlock> pending = new ArrayList<>();
    private long pendingRows;
    private int batchRows;

    LayerWriter(int layer, BufferAllocator allocator) throws IOException {
      this.layer = layer;
      root = VectorSchemaRoot.create(ArrowSchemas.layer(layout, layer), allocator);
      channel = FileChannel.open(staging.resolve(ShardLayout.layerFile(layer)), StandardOpenOption.CREATE_NEW,
          StandardOpenOption.WRITE);
      writer = new ArrowFileWriter(root, null, channel);
      writer.start();
      indexes = new FaissIndex[layout.heads()];
      FaissIndex[] template = templates.get(layer);
      for (int h = 0; h < indexes.length; h++) {
        indexes[h] = template != null ? template[h].copy() : FaissIndex.create(layout.headDim(), indexFactory);
      }
      root.allocateNew();
    }

    /** Arrow rows [n, heads * dim] from the head-major block; each head's keys to its index. */
    void append(String document, MemoryBlock block, long firstRow) throws IOException {
      int n = block.tokens();
      int dim = layout.headDim();
      byte[] name = document.getBytes(java.nio.charset.StandardCharsets.UTF_8);
      for (int i = 0; i < n; i++) {
        if (batchRows == BATCH_ROWS) {
          flush();
        }
        int r = batchRows++;
        ((VarCharVector) root.getVector(ArrowSchemas.DOCUMENT)).setSafe(r, name);
        ((IntVector) root.getVector(ArrowSchemas.POSITION)).setSafe(r, block.positions()[i]);
        FixedSizeListVector keys = (FixedSizeListVector) root.getVector(ArrowSchemas.KEY);
        FixedSizeListVector values = (FixedSizeListVector) root.getVector(ArrowSchemas.VALUE);
        keys.setNotNull(r);
        values.setNotNull(r);
        for (int h = 0; h < layout.heads(); h++) {
          int from = block.headOffset(h) + i * dim;
          int to = (r * layout.heads() + h) * dim;
          put(keys.getDataVector(), to, block.keys(), from, dim);
          put(values.getDataVector(), to, block.values(), from, dim);
        }
      }
      addToIndexes(block, firstRow);
    }

    /** Copies {@code count} floats of {@code src} from {@code offset} to element {@code at} of the list's data. */
    private void put(FieldVector data, int at, float[] src, int offset, int count) {
      if (data instanceof Float4Vector f) {
        for (int j = 0; j < count; j++) {
          f.setSafe(at + j, src[offset + j]);
        }
      } else {
        Float2Vector f = (Float2Vector) data;
        for (int j = 0; j < count; j++) {
          f.setSafe(at + j, io.longmem.memory.api.Float16.toHalf(src[offset + j]));
        }
      }
    }

    private void flush() throws IOException {
      if (batchRows == 0) {
        return;
      }
      root.setRowCount(batchRows);
      writer.writeBatch();
      root.clear();
      root.allocateNew();
      batchRows = 0;
    }

    /** Adds each head's [n, dim] run of keys to its index, or buffers the block until the indexes are trained. */
    private void addToIndexes(MemoryBlock block, long firstRow) {
      int n = block.tokens();
      if (indexes[0].isTrained()) {
        long[] ids = new long[n];
        for (int i = 0; i < n; i++) {
          ids[i] = firstRow + i;
        }
        for (int h = 0; h < layout.heads(); h++) {
          indexes[h].add(block.keys(), block.headOffset(h), n, ids);
        }
        return;
      }
      pending.add(block);
      pendingRows += n;
      if (pendingRows >= trainingRows) {
        trainAndAddPending();
      }
    }

    private void trainAndAddPending() {
      if (pending.isEmpty()) {
        return;
      }
      long[] ids = new long[(int) pendingRows];
      for (int i = 0; i < ids.length; i++) {
        ids[i] = i; // buffered keys are always the shard's first rows
      }
      int dim = layout.headDim();
      float[][] keys = new float[layout.heads()][(int) pendingRows * dim];
      for (int h = 0; h < layout.heads(); h++) {
        int at = 0;
        for (MemoryBlock b : pending) {
          int run = b.tokens() * dim;
          System.arraycopy(b.keys(), b.headOffset(h), keys[h], at, run);
          at += run;
        }
      }
      pending.clear();
      for (int h = 0; h < layout.heads(); h++) {
        try {
          indexes[h].train(keys[h]);
        } catch (RuntimeException e) {
          throw new CollectionException("shard " + id + ", layer " + layer + ", head " + h + ": training index '"
              + indexFactory + "' on " + pendingRows + " keys failed: " + e.getMessage());
        }
      }
      // the trained, still empty indexes become the collection's template for later shards
      FaissIndex[] template = new FaissIndex[indexes.length];
      for (int h = 0; h < indexes.length; h++) {
        template[h] = indexes[h].copy();
      }
      if (templates.putIfAbsent(layer, template) != null) {
        java.util.Arrays.stream(template).forEach(FaissIndex::close);
      }
      for (int h = 0; h < layout.heads(); h++) {
        indexes[h].add(keys[h], ids);
      }
      pendingRows = 0;
    }

    void finish() throws IOException {
      flush();
      writer.end();
      channel.force(true);
      if (!indexes[0].isTrained()) {
        trainAndAddPending();
      }
      for (int h = 0; h < indexes.length; h++) {
        indexes[h].write(staging.resolve(ShardLayout.indexFile(layer, h)));
      }
    }

    @Override
    public void close() throws IOException {
      try {
        writer.close();
      } catch (RuntimeException e) {
        // already ended or never started: nothing more to flush
      }
      channel.close();
      root.close();
      for (FaissIndex index : indexes) {
        if (index != null) {
          index.close();
        }
      }
    }
  }
}
