package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.ArrowBuf;
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
 * One memory layer of a shard being written ({@link ShardWriter}): the layer's Arrow file of every
 * token's key and value, and its per-head FAISS indexes. Apart from the shard writer, which keeps
 * the shard's documents, rows and directory, so each file stays readable.
 *
 * <p>Keys are added to the indexes as blocks come, except before the indexes are trained: then
 * blocks are buffered until {@code trainingRows} tokens arrived (or the layer finishes), the
 * indexes are trained on them, and the trained, still empty indexes become the collection's
 * template for the layer (later shards start from it instead of training again).
 */
final class LayerWriter implements AutoCloseable {
  private final int layer;
  private final ShardLayout layout;
  private final Path staging;
  private final String shardId;
  private final String indexFactory;
  private final int trainingRows;
  private final Map<Integer, FaissIndex[]> templates;
  private final VectorSchemaRoot root;
  private final FileChannel channel;
  private final ArrowFileWriter writer;
  private final FaissIndex[] indexes;
  /** Blocks whose keys are buffered until the indexes are trained. */
  private final List<MemoryBlock> pending = new ArrayList<>();
  private long pendingRows;
  private int batchRows;

  /**
   * Opens the layer's Arrow file in {@code staging}; its indexes start as copies of the
   * collection's trained template for the layer, if there is one yet.
   */
  LayerWriter(int layer, ShardLayout layout, Path staging, String shardId, String indexFactory, int trainingRows,
      Map<Integer, FaissIndex[]> templates, BufferAllocator allocator) throws IOException {
    this.layer = layer;
    this.layout = layout;
    this.staging = staging;
    this.shardId = shardId;
    this.indexFactory = indexFactory;
    this.trainingRows = trainingRows;
    this.templates = templates;
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
    allocate();
  }

  /**
   * A new batch: keys and values sized for {@link ShardWriter#BATCH_ROWS} rows and marked valid
   * up front, so that {@link #put} writes floats straight into the buffers (element by element
   * {@code setSafe}, which checks capacity and sets a validity bit per float, was a fifth of
   * encoding in bfloat16 compute).
   */
  private void allocate() {
    root.allocateNew();
    long floats = (long) ShardWriter.BATCH_ROWS * layout.heads() * layout.headDim();
    for (String name : new String[] {ArrowSchemas.KEY, ArrowSchemas.VALUE}) {
      FieldVector data = ((FixedSizeListVector) root.getVector(name)).getDataVector();
      while (data.getValueCapacity() < floats) {
        data.reAlloc();
      }
      data.getValidityBuffer().setOne(0, data.getValidityBuffer().capacity());
    }
  }

  /** Arrow rows [n, heads * dim] from the head-major block; each head's keys to its index. */
  void append(String document, MemoryBlock block, long firstRow) throws IOException {
    int n = block.tokens();
    int dim = layout.headDim();
    int heads = layout.heads();
    byte[] name = document.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    VarCharVector documents = (VarCharVector) root.getVector(ArrowSchemas.DOCUMENT);
    IntVector positions = (IntVector) root.getVector(ArrowSchemas.POSITION);
    FixedSizeListVector keys = (FixedSizeListVector) root.getVector(ArrowSchemas.KEY);
    FixedSizeListVector values = (FixedSizeListVector) root.getVector(ArrowSchemas.VALUE);
    for (int i = 0; i < n; i++) {
      if (batchRows == ShardWriter.BATCH_ROWS) {
        flush();
      }
      int r = batchRows++;
      documents.setSafe(r, name);
      positions.setSafe(r, block.positions()[i]);
      keys.setNotNull(r);
      values.setNotNull(r);
      FieldVector keyData = keys.getDataVector();
      FieldVector valueData = values.getDataVector();
      for (int h = 0; h < heads; h++) {
        int from = block.headOffset(h) + i * dim;
        int to = (r * heads + h) * dim;
        put(keyData, to, block.keys(), from, dim);
        put(valueData, to, block.values(), from, dim);
      }
    }
    addToIndexes(block, firstRow);
  }

  /**
   * Copies {@code count} floats of {@code src} from {@code offset} to element {@code at} of the
   * list's data (sized and marked valid by {@link #allocate}).
   */
  private static void put(FieldVector data, int at, float[] src, int offset, int count) {
    ArrowBuf buf = data.getDataBuffer();
    if (data instanceof Float4Vector) {
      for (int j = 0; j < count; j++) {
        buf.setFloat((long) (at + j) * Float4Vector.TYPE_WIDTH, src[offset + j]);
      }
    } else {
      for (int j = 0; j < count; j++) {
        buf.setShort((long) (at + j) * Float2Vector.TYPE_WIDTH, io.longmem.memory.api.Float16.toHalf(src[offset + j]));
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
    allocate();
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
        throw new CollectionException("shard " + shardId + ", layer " + layer + ", head " + h + ": training index '"
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
