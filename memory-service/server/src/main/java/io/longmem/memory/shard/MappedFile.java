package io.longmem.memory.shard;

import java.io.IOException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The mappings of one file, and who may still read them. Native code reads shard rows by raw
 * address, so a mapping must not go while a search or an answer reads it: each reader holds a
 * {@link Pin} for the duration of its reads; the owner's {@link #close} refuses new pins and the
 * mappings are unmapped when the last pin goes (not when the collector gets round to it).
 *
 * <p>The count starts at one, the owner's reference. Once it reaches zero it never rises again:
 * every read checks {@link #checkLive} first, so a read after close fails with a clear error
 * instead of touching unmapped memory.
 */
public final class MappedFile {
  private static final Logger LOG = LoggerFactory.getLogger(MappedFile.class);
  private static final Unmapper UNMAPPER = Unmapper.find();

  private final Path path;
  private final List<MappedByteBuffer> buffers;
  /**
   * the open file (closed with the mappings): its size is what a truncation changes. A
   * RandomAccessFile, not a FileChannel: its length() is a plain fstat, where a channel's size()
   * takes a lock and closes the channel for good when the calling thread is interrupted.
   */
  private final RandomAccessFile file;
  /** bytes of the file the mappings need: a file shorter than this has lost mapped pages */
  private final long extent;
  private final AtomicInteger refs = new AtomicInteger(1);
  private final AtomicBoolean closed = new AtomicBoolean();
  /** why the file can no longer be read (set once, never cleared) */
  private volatile String damage;

  /**
   * @param file the file, kept open to check its size ({@link #checkIntact}); null: unchecked
   * @param extent how many bytes of the file the mappings reach
   */
  MappedFile(Path path, List<MappedByteBuffer> buffers, RandomAccessFile file, long extent) {
    this.path = path;
    this.buffers = List.copyOf(buffers);
    this.file = file;
    this.extent = extent;
  }

  /** How many bytes of the file are mapped. */
  public long mappedBytes() {
    return extent;
  }

  /** Pins the files for reads by address; close the pin when done. */
  public static Pin pin(MappedFile... files) {
    int i = 0;
    try {
      for (; i < files.length; i++) {
        files[i].retain();
      }
    } catch (RuntimeException e) {
      while (--i >= 0) {
        files[i].release();
      }
      throw e;
    }
    return new Pin(files);
  }

  private void retain() {
    while (true) {
      int r = refs.get();
      if (r == 0 || closed.get()) {
        throw new MappingClosedException(path);
      }
      if (refs.compareAndSet(r, r + 1)) {
        return;
      }
    }
  }

  private void release() {
    int r = refs.decrementAndGet();
    if (r == 0) {
      for (MappedByteBuffer b : buffers) {
        UNMAPPER.unmap(b);
      }
      closeFile();
    } else if (r < 0) {
      throw new IllegalStateException(path + ": released more often than pinned");
    }
  }

  /** Throws unless the file is still mapped and not found damaged; every read checks this first. */
  void checkLive() {
    if (refs.get() <= 0) {
      throw new MappingClosedException(path);
    }
    String why = damage;
    if (why != null) {
      throw new FileChangedException(why);
    }
  }

  /**
   * Throws {@link FileChangedException} if the file is now shorter than its mappings (truncated
   * under the node: reading the lost pages would fault) or was found damaged before. One fstat:
   * cheap enough for every search, which checks the files it pins before reading any of them.
   */
  void checkIntact() {
    checkLive();
    if (file == null) {
      return;
    }
    long size;
    try {
      size = file.length();
    } catch (IOException | RuntimeException e) {
      throw damaged(path + " cannot be checked any more (" + e + ")");
    }
    if (size < extent) {
      throw damaged(path + " was truncated under the node: " + size + " bytes, its mapped data needs "
          + extent + "; the file is refused until the collection is reloaded");
    }
  }

  /**
   * Records that the file can no longer be read (a truncation seen by {@link #checkIntact}, a
   * fault in a read) and returns the exception to throw: every later read and pin fails with it.
   */
  FileChangedException damaged(String why) {
    if (damage == null) {
      damage = why;
      LOG.error("{}", why);
    }
    return new FileChangedException(damage);
  }

  Path path() {
    return path;
  }

  /** Why the file can no longer be read, or null. */
  String damage() {
    return damage;
  }

  private void closeFile() {
    if (file != null) {
      try {
        file.close();
      } catch (IOException e) {
        LOG.warn("cannot close {}: {}", path, e.toString());
      }
    }
  }

  /** Whether the mappings are gone (closed and no pin left). */
  public boolean isUnmapped() {
    return refs.get() <= 0;
  }

  /** Refuses new pins; unmaps now, or when the last pin is closed. */
  public void close() {
    if (closed.compareAndSet(false, true)) {
      release();
    }
  }

  /** Readers' hold on some mapped files: while it is open they stay mapped. Closing twice is harmless. */
  public static final class Pin implements AutoCloseable {
    private final MappedFile[] files;
    private final AtomicBoolean open = new AtomicBoolean(true);

    private Pin(MappedFile[] files) {
      this.files = files;
    }

    @Override
    public void close() {
      if (open.compareAndSet(true, false)) {
        for (MappedFile f : files) {
          f.release();
        }
      }
    }
  }

  /** A read of a file that was closed: the collection went away under the reader. */
  public static class MappingClosedException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    MappingClosedException(Path path) {
      super(path + " is closed: its collection was closed");
    }

    MappingClosedException(String message) {
      super(message);
    }
  }

  /**
   * A read of a file that changed under its mappings (truncated by an operator's copy, a full or
   * bad disk): like a closed file, it is unavailable here (another replica may answer), and the
   * message names the file and what changed.
   */
  public static final class FileChangedException extends MappingClosedException {
    private static final long serialVersionUID = 1L;

    FileChangedException(String message) {
      super(message);
    }
  }

  /**
   * Unmaps a MappedByteBuffer now: Java 17 has no API for it, so {@code sun.misc.Unsafe.invokeCleaner}
   * (jdk.unsupported) is used; without it the mapping goes with the garbage collector as before.
   */
  private record Unmapper(Object unsafe, Method invokeCleaner) {
    static Unmapper find() {
      try {
        Class<?> c = Class.forName("sun.misc.Unsafe");
        java.lang.reflect.Field f = c.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        return new Unmapper(f.get(null), c.getMethod("invokeCleaner", ByteBuffer.class));
      } catch (ReflectiveOperationException | RuntimeException e) {
        LOG.warn("cannot unmap files explicitly ({}): closed collections stay mapped until collected", e.toString());
        return new Unmapper(null, null);
      }
    }

    void unmap(MappedByteBuffer b) {
      if (invokeCleaner == null || b.capacity() == 0) {
        return;
      }
      try {
        invokeCleaner.invoke(unsafe, b);
      } catch (ReflectiveOperationException | RuntimeException e) {
        LOG.warn("cannot unmap a buffer: {}", e.toString());
      }
    }
  }
}
