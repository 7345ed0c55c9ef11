package io.longmem.memory.shard;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.faiss.FaissIndex;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A committed collection, opened for reading: its manifest checked against the model that will
 * use it, every file checked (size, and SHA-256 unless told not to) before anything is loaded, the
 * Arrow files memory-mapped and the FAISS indexes opened. A damaged file is refused with its path.
 */
public final class MemoryCollection implements AutoCloseable {
  private final Path dir;
  private final Manifest manifest;
  private final List<Shard> shards = new ArrayList<>();
  /** why the collection can no longer be searched (a file changed under it), or null: set once */
  private final AtomicReference<String> damage = new AtomicReference<>();

  private MemoryCollection(Path dir, Manifest manifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  /** What of a collection's files is read into memory when it opens (the rest is read when used). */
  public enum Preload {
    NONE,
    KEYS,
    /** keys, values and positions */
    ALL
  }

  /**
   * How a collection is opened.
   *
   * @param verifyChecksums re-hash every file (catches corruption, costs a full read)
   * @param mmapIndexes leave IVF inverted lists on disk
   * @param preload what to read into memory at open and map (see {@link LayerFile#open})
   * @param shards ids of the shards to load (a node of a cluster serves a part; the manifest, which
   *     every node has, describes the whole); null loads all
   */
  public record Loading(boolean verifyChecksums, boolean mmapIndexes, Preload preload,
      java.util.Set<String> shards) {}

  /**
   * @param expectedFingerprint the reading model's fingerprint; null skips the check (inspection)
   * @param verifyChecksums re-hash every file (catches corruption, costs a full read)
   * @param mmapIndexes leave IVF inverted lists on disk
   */
  public static MemoryCollection open(Path dir, String expectedFingerprint, boolean verifyChecksums,
      boolean mmapIndexes) throws IOException {
    return open(dir, Manifest.read(dir), expectedFingerprint,
        new Loading(verifyChecksums, mmapIndexes, Preload.NONE, null));
  }

  /**
   * Opens a collection whose manifest the caller has read (a node reads it first to size what it
   * preloads).
   *
   * @param expectedFingerprint the reading model's fingerprint; null skips the check (inspection)
   */
  public static MemoryCollection open(Path dir, Manifest m, String expectedFingerprint, Loading how)
      throws IOException {
    java.util.Set<String> shardsToLoad = how.shards();
    boolean verifyChecksums = how.verifyChecksums();
    if (shardsToLoad != null) {
      java.util.Set<String> known = new java.util.HashSet<>();
      m.shards().forEach(s -> known.add(s.id()));
      for (String id : shardsToLoad) {
        if (!known.contains(id)) {
          throw new CollectionException(dir + " has no shard " + id);
        }
      }
    }
    if (expectedFingerprint != null && !expectedFingerprint.equals(m.modelFingerprint())) {
      throw new CollectionException(dir + " was written by model " + m.modelFingerprint()
          + ", not by this model (" + expectedFingerprint + "): its memory means nothing to it");
    }
    Path realDir = dir.toRealPath();
    for (Manifest.ShardEntry s : m.shards()) {
      if (shardsToLoad != null && !shardsToLoad.contains(s.id())) {
        continue;
      }
      ManifestChecks.checkFiles(dir, realDir, s, m.layout());
      for (Manifest.FileEntry f : s.files()) {
        Path p = dir.resolve(f.path()).normalize();
        long size = Files.size(p);
        if (size != f.bytes()) {
          throw new CollectionException(p + " has " + size + " bytes, the manifest says " + f.bytes()
              + " (truncated or rewritten)");
        }
        if (verifyChecksums && !io.longmem.io.FileTrees.sha256(p).equals(f.sha256())) {
          throw new CollectionException(p + " does not match its SHA-256 in the manifest (corrupted)");
        }
      }
    }
    MemoryCollection c = new MemoryCollection(dir, m);
    try {
      for (Manifest.ShardEntry s : m.shards()) {
        if (shardsToLoad == null || shardsToLoad.contains(s.id())) {
          c.shards.add(new Shard(dir, s, m.layout(), how.mmapIndexes(), how.preload(), c.damage));
        }
      }
    } catch (IOException | RuntimeException e) {
      c.close();
      throw e;
    }
    return c;
  }

  public Path dir() {
    return dir;
  }

  public Manifest manifest() {
    return manifest;
  }

  public ShardLayout layout() {
    return manifest.layout();
  }

  /** The loaded shards, in manifest order. */
  public List<Shard> shards() {
    return shards;
  }

  /** The loaded shard of that id, or null. */
  public Shard shard(String id) {
    for (Shard s : shards) {
      if (s.id().equals(id)) {
        return s;
      }
    }
    return null;
  }

  /**
   * Why this collection can no longer be searched, or null: a file of it changed under the node
   * (see {@link Shard#pin}); it stays refused until it is reloaded.
   */
  public String damage() {
    return damage.get();
  }

  @Override
  public void close() {
    for (Shard s : shards) {
      s.close();
    }
  }

  /**
   * One shard: per layer its Arrow file, memory-mapped (rows are read where they lie), and per
   * (layer, head) its FAISS index.
   */
  public static final class Shard implements AutoCloseable {
    private final Manifest.ShardEntry entry;
    private final ShardLayout layout;
    /** by layer number (a handful of layers: plain arrays, looked up per candidate while re-scoring) */
    private final LayerFile[] layers;
    private final FaissIndex[][] indexes;
    /** the collection's damage, shared by its shards */
    private final AtomicReference<String> damage;

    Shard(Path dir, Manifest.ShardEntry entry, ShardLayout layout, boolean mmap, Preload preload,
        AtomicReference<String> damage) throws IOException {
      this.entry = entry;
      this.layout = layout;
      this.damage = damage;
      Path shardDir = dir.resolve(entry.dir());
      int maxLayer = layout.layers().stream().mapToInt(Integer::intValue).max().orElse(-1);
      layers = new LayerFile[maxLayer + 1];
      indexes = new FaissIndex[maxLayer + 1][];
      try {
        for (int layer : layout.layers()) {
          Path file = shardDir.resolve(ShardLayout.layerFile(layer));
          LayerFile data = LayerFile.open(file, layout, layer, preload);
          if (data.rows() != entry.rows()) {
            throw new CollectionException(file + " holds " + data.rows() + " rows, the manifest says " + entry.rows());
          }
          layers[layer] = data;
          FaissIndex[] perHead = new FaissIndex[layout.heads()];
          indexes[layer] = perHead;
          for (int h = 0; h < perHead.length; h++) {
            Path f = shardDir.resolve(ShardLayout.indexFile(layer, h));
            try {
              perHead[h] = FaissIndex.read(f, mmap);
            } catch (IOException e) {
              throw new CollectionException(e.getMessage());
            }
            if (perHead[h].size() != entry.rows() || perHead[h].dim() != layout.headDim()) {
              throw new CollectionException(f + " indexes " + perHead[h].size() + " vectors of dimension "
                  + perHead[h].dim() + ", the shard has " + entry.rows() + " of " + layout.headDim());
            }
            String why = perHead[h].validate(entry.rows());
            if (why != null) {
              throw new CollectionException(f + " does not fit its shard: " + why);
            }
          }
        }
      } catch (IOException | RuntimeException e) {
        close();
        throw e;
      }
    }

    public String id() {
      return entry.id();
    }

    public long rows() {
      return entry.rows();
    }

    public List<Manifest.DocumentEntry> documents() {
      return entry.documents();
    }

    /** Copies the key of (row, head) of a layer, head_dim floats, into dst at off. */
    public void readKey(int layer, long row, int head, float[] dst, int off) {
      layer(layer).read(true, row, head * layout.headDim(), layout.headDim(), dst, off);
    }

    /** Copies the value of (row, head) of a layer into dst at off. */
    public void readValue(int layer, long row, int head, float[] dst, int off) {
      layer(layer).read(false, row, head * layout.headDim(), layout.headDim(), dst, off);
    }

    /**
     * Where the key (or value) of (row, head) lies in memory, for {@link
     * io.longmem.memory.faiss.MappedReads}: valid while a {@link #pin} of this shard is held (the
     * files are unmapped when the shard is closed and the last pin is released).
     */
    public long address(int layer, long row, int head, boolean key) {
      return layer(layer).address(key, row, head * layout.headDim(), layout.headDim());
    }

    /** Where the position of a row (an int32) lies in memory, like {@link #address}. */
    public long positionAddress(long row) {
      return layer(layout.layers().get(0)).positionAddress(row);
    }

    /**
     * Keeps every layer file of this shard mapped until the pin is closed: hold one around reads by
     * {@link #address}. Fails once the shard is closed.
     */
    public MappedFile.Pin pin() {
      String why = damage.get();
      if (why != null) {
        throw new MappedFile.FileChangedException("the collection is refused since a file changed under it: " + why);
      }
      MappedFile[] files = new MappedFile[layout.layers().size()];
      for (int i = 0; i < files.length; i++) {
        files[i] = layer(layout.layers().get(i)).mapped();
      }
      MappedFile.Pin pin = MappedFile.pin(files);
      try {
        // a file truncated under its mappings would fault on the first read of a lost page: one
        // fstat per file per search finds it first
        for (MappedFile f : files) {
          f.checkIntact();
        }
      } catch (MappedFile.FileChangedException e) {
        pin.close();
        damage.compareAndSet(null, e.getMessage());
        throw e;
      }
      return pin;
    }

    /** Whether keys and values are stored as float16 (else float32). */
    public boolean isFloat16() {
      return layout.storage() == MemoryBlock.Storage.FLOAT16;
    }

    /** Position of a row within its document. */
    public int position(long row) {
      return layer(layout.layers().get(0)).position(row);
    }

    /** The document a row belongs to (documents are sorted runs of rows). */
    public String documentOf(long row) {
      return entry.documents().get(documentIndexOf(row)).id();
    }

    /** Index into {@link #documents()} of the document a row belongs to. */
    public int documentIndexOf(long row) {
      List<Manifest.DocumentEntry> docs = entry.documents();
      int lo = 0;
      int hi = docs.size() - 1;
      while (lo <= hi) {
        int mid = (lo + hi) >>> 1;
        Manifest.DocumentEntry d = docs.get(mid);
        if (row < d.begin()) {
          hi = mid - 1;
        } else if (row >= d.end()) {
          lo = mid + 1;
        } else {
          return mid;
        }
      }
      throw new InputException("row " + row + " is outside the documents of shard " + entry.id());
    }

    public FaissIndex index(int layer, int head) {
      FaissIndex[] perHead = layer >= 0 && layer < indexes.length ? indexes[layer] : null;
      if (perHead == null) {
        throw new InputException("layer " + layer + " is not in this collection (layers "
            + layout.layers() + ")");
      }
      if (head < 0 || head >= perHead.length) {
        throw new InputException("head " + head + " is outside 0.." + (perHead.length - 1));
      }
      return perHead[head];
    }

    private LayerFile layer(int layer) {
      LayerFile f = layer >= 0 && layer < layers.length ? layers[layer] : null;
      if (f == null) {
        throw new InputException("layer " + layer + " is not in this collection (layers " + layout.layers()
            + ")");
      }
      return f;
    }

    @Override
    public void close() {
      for (FaissIndex[] perHead : indexes) {
        if (perHead == null) {
          continue;
        }
        for (FaissIndex i : perHead) {
          if (i != null) {
            i.close();
          }
        }
      }
      java.util.Arrays.fill(indexes, null);
      // the layer files are unmapped now, or when the last search that pinned them is done
      for (LayerFile f : layers) {
        if (f != null) {
          f.mapped().close();
        }
      }
    }
  }
}
