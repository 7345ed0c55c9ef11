package io.longmem.memory.shard;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import io.longmem.memory.api.Float16;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ReadChannel;
import org.apache.arrow.vector.ipc.message.ArrowBlock;
import org.apache.arrow.vector.ipc.message.MessageMetadataResult;
import org.apache.arrow.vector.ipc.message.MessageSerializer;

/**
 * One layer file of a shard, memory-mapped: the Arrow footer and batch headers are read, and the
 * key, value and position buffers of every record batch are mapped where they lie in the file.
 * Nothing is copied onto the heap, so a shard may be far larger than memory; the page cache keeps
 * what is used.
 */
final class LayerFile {
  // buffer order of a batch, depth first: document (validity, offsets, data), position (validity,
  // data), key (validity, item validity, item data), value (likewise)
  private static final int POSITION_DATA = 4;
  private static final int KEY_DATA = 7;
  private static final int VALUE_DATA = 10;

  private final int width;
  private final boolean half;
  private final long[] firstRow;
  /** per record batch, typed views of the mapped key and value data: ShortBuffer (float16) or FloatBuffer */
  private final java.nio.Buffer[] keys;
  private final java.nio.Buffer[] values;
  /** where each batch's keys, values and positions lie in memory, for native reads */
  private final long[] keyAddress;
  private final long[] valueAddress;
  private final long[] positionAddress;
  private final ByteBuffer[] positions;
  private final long rows;
  /** rows of every batch but the last, when they are all alike (as the shard writer writes them); 0 if not */
  private final long uniformRows;
  /** owns the mappings: every read checks it is live, searches pin it while they read by address */
  private final MappedFile mapped;

  private LayerFile(MappedFile mapped, int width, boolean half, List<long[]> ranges, List<ByteBuffer[]> buffers) {
    this.mapped = mapped;
    this.width = width;
    this.half = half;
    int n = ranges.size();
    firstRow = new long[n];
    keys = new java.nio.Buffer[n];
    values = new java.nio.Buffer[n];
    keyAddress = new long[n];
    valueAddress = new long[n];
    positionAddress = new long[n];
    positions = new ByteBuffer[n];
    long total = 0;
    for (int i = 0; i < n; i++) {
      firstRow[i] = ranges.get(i)[0];
      keys[i] = half ? buffers.get(i)[0].asShortBuffer() : buffers.get(i)[0].asFloatBuffer();
      values[i] = half ? buffers.get(i)[1].asShortBuffer() : buffers.get(i)[1].asFloatBuffer();
      positions[i] = buffers.get(i)[2];
      keyAddress[i] = address(buffers.get(i)[0]);
      valueAddress[i] = address(buffers.get(i)[1]);
      positionAddress[i] = address(positions[i]);
      total += ranges.get(i)[1];
    }
    rows = total;
    long first = n > 1 ? firstRow[1] : 0;
    boolean uniform = first > 0;
    for (int i = 0; i < n && uniform; i++) {
      uniform = firstRow[i] == i * first;
    }
    uniformRows = uniform ? first : 0;
  }

  private static long address(ByteBuffer mapped) {
    return mapped.capacity() == 0 ? 0 : io.longmem.memory.faiss.MappedReads.address(mapped); // an empty batch is never read
  }

  /**
   * @param preload what to read into memory now, mapping every page of it: re-scoring reads keys
   *     at random and answers read values and positions at random; a page not yet mapped costs a
   *     fault that no prefetch can hide
   */
  static LayerFile open(Path file, ShardLayout layout, int layer, MemoryCollection.Preload preload)
      throws IOException {
    int elem = layout.storage().bytes();
    int width = layout.width();
    List<long[]> ranges = new ArrayList<>();
    List<ByteBuffer[]> buffers = new ArrayList<>();
    List<MappedByteBuffer> mappings = new ArrayList<>();
    // the file stays open with the mappings: a search checks its size (MappedFile.checkIntact)
    java.io.RandomAccessFile raf;
    try {
      raf = new java.io.RandomAccessFile(file.toFile(), "r");
    } catch (IOException e) {
      throw new CollectionException(file + ": cannot be opened: " + e.getMessage());
    }
    FileChannel ch = raf.getChannel();
    long extent = 0;
    try (BufferAllocator allocator = new RootAllocator();
         ArrowFileReader reader = new ArrowFileReader(new NonClosingChannel(ch), allocator)) {
      if (!reader.getVectorSchemaRoot().getSchema().equals(ArrowSchemas.layer(layout, layer))) {
        throw new CollectionException(file + ": schema " + reader.getVectorSchemaRoot().getSchema()
            + " does not match the manifest");
      }
      long size = ch.size();
      long row = 0;
      for (ArrowBlock block : reader.getRecordBlocks()) {
        ch.position(block.getOffset());
        MessageMetadataResult meta = MessageSerializer.readMessage(new ReadChannel(ch));
        if (meta == null || meta.headerType() != MessageHeader.RecordBatch) {
          throw new CollectionException(file + ": block at " + block.getOffset() + " is not a record batch");
        }
        RecordBatch batch = (RecordBatch) meta.getMessage().header(new RecordBatch());
        if (batch.compression() != null) {
          throw new CollectionException(file + ": compressed record batches are not supported");
        }
        long n = batch.length();
        long body = block.getOffset() + block.getMetadataLength();
        MappedByteBuffer k = map(ch, file, body, batch.buffers(KEY_DATA), n * width * elem, size, mappings);
        MappedByteBuffer v = map(ch, file, body, batch.buffers(VALUE_DATA), n * width * elem, size, mappings);
        MappedByteBuffer p = map(ch, file, body, batch.buffers(POSITION_DATA), n * 4, size, mappings);
        if (preload != MemoryCollection.Preload.NONE) {
          k.load();
        }
        if (preload == MemoryCollection.Preload.ALL) {
          v.load();
          p.load();
        }
        extent = Math.max(extent, body + Math.max(batch.buffers(KEY_DATA).offset() + n * width * elem,
            Math.max(batch.buffers(VALUE_DATA).offset() + n * width * elem, batch.buffers(POSITION_DATA).offset() + n * 4)));
        ranges.add(new long[] {row, n});
        buffers.add(new ByteBuffer[] {k, v, p});
        row += n;
      }
    } catch (CollectionException e) {
      new MappedFile(file, mappings, raf, 0).close();
      throw e;
    } catch (IOException | RuntimeException | InternalError e) { // InternalError: a preload read past a truncation
      new MappedFile(file, mappings, raf, 0).close();
      throw new CollectionException(file + ": not a readable Arrow IPC file: " + e);
    }
    return new LayerFile(new MappedFile(file, mappings, raf, extent), width, elem == 2, ranges, buffers);
  }

  /** The Arrow reader closes its channel; the layer file keeps its file open (for its size) until unmapped. */
  private static final class NonClosingChannel implements java.nio.channels.SeekableByteChannel {
    private final FileChannel ch;

    NonClosingChannel(FileChannel ch) {
      this.ch = ch;
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
      return ch.read(dst);
    }

    @Override
    public int write(ByteBuffer src) {
      throw new java.nio.channels.NonWritableChannelException();
    }

    @Override
    public long position() throws IOException {
      return ch.position();
    }

    @Override
    public NonClosingChannel position(long newPosition) throws IOException {
      ch.position(newPosition);
      return this;
    }

    @Override
    public long size() throws IOException {
      return ch.size();
    }

    @Override
    public NonClosingChannel truncate(long size) {
      throw new java.nio.channels.NonWritableChannelException();
    }

    @Override
    public boolean isOpen() {
      return ch.isOpen();
    }

    @Override
    public void close() {}
  }

  private static MappedByteBuffer map(FileChannel ch, Path file, long body, Buffer b, long need, long size,
      List<MappedByteBuffer> mappings) throws IOException {
    if (b.length() < need || body + b.offset() + need > size || need > Integer.MAX_VALUE) {
      throw new CollectionException(file + ": a buffer of " + b.length() + " bytes where " + need
          + " are needed (truncated file?)");
    }
    MappedByteBuffer m = ch.map(FileChannel.MapMode.READ_ONLY, body + b.offset(), need);
    mappings.add(m);
    m.order(ByteOrder.LITTLE_ENDIAN);
    return m;
  }

  /** The mappings of this file, for pins and for close. */
  MappedFile mapped() {
    return mapped;
  }

  long rows() {
    return rows;
  }

  private int batch(long row) {
    if (uniformRows > 0) {
      return (int) Math.min(row / uniformRows, firstRow.length - 1);
    }
    int lo = 0;
    int hi = firstRow.length - 1;
    while (lo < hi) {
      int mid = (lo + hi + 1) >>> 1;
      if (firstRow[mid] <= row) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  }

  /** Copies n numbers of a row, from {@code offset} within it, into dst. */
  void read(boolean key, long row, int offset, int n, float[] dst, int dstOffset) {
    mapped.checkLive();
    int b = batch(row);
    int index = (int) ((row - firstRow[b]) * width + offset);
    try {
      if (half) {
        java.nio.ShortBuffer src = (java.nio.ShortBuffer) (key ? keys[b] : values[b]);
        for (int i = 0; i < n; i++) {
          dst[dstOffset + i] = Float16.toFloat(src.get(index + i));
        }
      } else {
        ((java.nio.FloatBuffer) (key ? keys[b] : values[b])).get(index, dst, dstOffset, n);
      }
    } catch (InternalError e) {
      throw faulted(e);
    }
  }

  /**
   * A Java read of a mapped page the file lost (truncated under the node) raises InternalError
   * ("a fault occurred in an unsafe memory access operation"), not a crash: it becomes the
   * file's recorded damage, which every later read and search of it reports.
   */
  private MappedFile.FileChangedException faulted(InternalError e) {
    return mapped.damaged(mapped.path() + " could not be read (" + e.getMessage()
        + "): it was truncated or became unreadable under the node");
  }

  /**
   * The address of n numbers of a row's key (or value), from {@code offset} within it, in the
   * mapped file: for {@link io.longmem.memory.faiss.MappedReads}, valid while a {@link MappedFile.Pin}
   * of this file is held.
   */
  long address(boolean key, long row, int offset, int n) {
    mapped.checkLive();
    if (row < 0 || row >= rows || offset < 0 || offset + n > width) {
      throw new IndexOutOfBoundsException("row " + row + " of " + rows + ", numbers " + offset + "+" + n + " of "
          + width);
    }
    int b = batch(row);
    return (key ? keyAddress[b] : valueAddress[b]) + ((row - firstRow[b]) * width + offset) * (half ? 2 : 4);
  }

  /** The address of a row's position (an int32), like {@link #address}. */
  long positionAddress(long row) {
    mapped.checkLive();
    if (row < 0 || row >= rows) {
      throw new IndexOutOfBoundsException("row " + row + " of " + rows);
    }
    int b = batch(row);
    return positionAddress[b] + (row - firstRow[b]) * 4;
  }

  boolean isFloat16() {
    return half;
  }

  int position(long row) {
    mapped.checkLive();
    int b = batch(row);
    try {
      return positions[b].getInt((int) ((row - firstRow[b]) * 4));
    } catch (InternalError e) {
      throw faulted(e);
    }
  }
}
