package io.longmem.memory.shard;

import com.google.gson.FieldNamingPolicy;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import io.longmem.memory.api.MemoryBlock;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code manifest.json}: what a collection holds and which model wrote it. It is written last,
 * to a temporary name and renamed, so a collection without one is incomplete by definition.
 * The format is described in docs/shard-format.md.
 */
public final class Manifest {
  public static final String FILE = "manifest.json";
  public static final int FORMAT_VERSION = 1;
  private static final Gson GSON = new GsonBuilder()
      .setFieldNamingPolicy(FieldNamingPolicy.LOWER_CASE_WITH_UNDERSCORES).setPrettyPrinting().create();

  int formatVersion = FORMAT_VERSION;
  String modelFingerprint;
  List<Integer> layers;
  int heads;
  int headDim;
  String storageDtype;
  String memDtype;
  String indexFactory;
  String metric = "inner_product";
  List<ShardEntry> shards = new ArrayList<>();

  /** One immutable shard: its files with sizes and checksums, and the documents it holds. */
  public static final class ShardEntry implements java.io.Serializable {
    private static final long serialVersionUID = 1L;
    String id;
    long rows;
    List<FileEntry> files = new ArrayList<>();
    List<DocumentEntry> documents = new ArrayList<>();
    /**
     * Where the shard's files lie, relative to the collection; absent: {@code shards/<id>}. A
     * collection committed by manifest (object stores, where a rename is a copy) names the
     * attempt whose files are the shard: {@code shards/<id>.<attempt>}.
     */
    String dir;

    public String id() {
      return id;
    }

    /** The shard's directory relative to the collection. */
    public String dir() {
      return dir != null ? dir : CollectionWriter.SHARDS + "/" + id;
    }

    /**
     * This entry with its files moved to {@code dir} (relative to the collection), for a shard
     * committed by manifest from its attempt's own directory.
     */
    public ShardEntry movedTo(String newDir) {
      ShardEntry e = new ShardEntry();
      e.id = id;
      e.rows = rows;
      e.dir = newDir.equals(CollectionWriter.SHARDS + "/" + id) ? null : newDir;
      String old = dir() + "/";
      for (FileEntry f : files) {
        if (!f.path().startsWith(old)) {
          throw new IllegalStateException("file " + f.path() + " of shard " + id + " is not in " + old);
        }
        e.files.add(new FileEntry(newDir + "/" + f.path().substring(old.length()), f.bytes(), f.sha256()));
      }
      e.documents.addAll(documents);
      return e;
    }

    public long rows() {
      return rows;
    }

    public List<FileEntry> files() {
      return files;
    }

    public List<DocumentEntry> documents() {
      return documents;
    }
  }

  /** A file relative to the collection directory. */
  public record FileEntry(String path, long bytes, String sha256) implements java.io.Serializable {}

  /** A document's tokens are rows [begin, end) of its shard, in reading order. */
  public record DocumentEntry(String id, long begin, long end) implements java.io.Serializable {}

  Manifest() {}

  public static Manifest create(String modelFingerprint, ShardLayout layout, String memDtype, String indexFactory) {
    Manifest m = new Manifest();
    m.modelFingerprint = modelFingerprint;
    m.layers = layout.layers();
    m.heads = layout.heads();
    m.headDim = layout.headDim();
    m.storageDtype = layout.storage().jsonName();
    m.memDtype = memDtype;
    m.indexFactory = indexFactory;
    return m;
  }

  public ShardLayout layout() {
    return new ShardLayout(layers, heads, headDim, MemoryBlock.Storage.parse(storageDtype));
  }

  public String modelFingerprint() {
    return modelFingerprint;
  }

  public String memDtype() {
    return memDtype;
  }

  public String indexFactory() {
    return indexFactory;
  }

  public List<ShardEntry> shards() {
    return shards;
  }

  public long rows() {
    return shards.stream().mapToLong(s -> s.rows).sum();
  }

  public static Manifest read(Path collection) throws IOException {
    Path file = collection.resolve(FILE);
    String json;
    try {
      json = Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new CollectionException(collection + " is not a committed collection: no " + FILE
          + " (an interrupted write leaves none)");
    }
    Manifest m;
    try {
      m = GSON.fromJson(json, Manifest.class);
    } catch (JsonParseException e) {
      throw new CollectionException(file + ": not a valid manifest: " + e.getMessage());
    }
    return checked(m, file);
  }

  private static Manifest checked(Manifest m, Path file) {
    if (m == null || m.formatVersion != FORMAT_VERSION) {
      throw new CollectionException(file + ": format_version " + (m == null ? "missing" : m.formatVersion)
          + ", this longmem reads " + FORMAT_VERSION);
    }
    if (m.modelFingerprint == null || m.layers == null || m.shards == null || m.indexFactory == null
        || m.storageDtype == null) {
      throw new CollectionException(file + ": incomplete manifest (model_fingerprint, layers, shards, "
          + "index_factory and storage_dtype are required)");
    }
    ManifestChecks.check(m, file);
    m.layout();
    return m;
  }

  /** The record a finished shard keeps in its own directory, so that a resumed run can list it. */
  public static final String SHARD_RECORD = "shard.json";

  static void writeShardRecord(Path shardDir, ShardEntry entry) throws IOException {
    String json = GSON.toJson(entry);
    io.longmem.io.AtomicFiles.write(shardDir.resolve(SHARD_RECORD),
        tmp -> Files.writeString(tmp, json, StandardCharsets.UTF_8));
  }

  static ShardEntry readShardRecord(Path shardDir) throws IOException {
    Path file = shardDir.resolve(SHARD_RECORD);
    try {
      ShardEntry e = GSON.fromJson(Files.readString(file, StandardCharsets.UTF_8), ShardEntry.class);
      if (e == null || e.id == null || e.files == null || e.documents == null) {
        throw new CollectionException(file + ": incomplete shard record");
      }
      return e;
    } catch (NoSuchFileException e) {
      throw new CollectionException(shardDir + " has no " + SHARD_RECORD + ": not a finished shard");
    } catch (JsonParseException e) {
      throw new CollectionException(file + ": not a valid shard record: " + e.getMessage());
    }
  }

  /** The shard record (shard.json) as it is written. */
  public static String shardRecordJson(ShardEntry entry) {
    return GSON.toJson(entry);
  }

  /** Parses a shard record read from elsewhere (a Hadoop filesystem); {@code where} names it in errors. */
  public static ShardEntry parseShardRecord(String json, String where) {
    try {
      ShardEntry e = GSON.fromJson(json, ShardEntry.class);
      if (e == null || e.id == null || e.files == null || e.documents == null) {
        throw new CollectionException(where + ": incomplete shard record");
      }
      return e;
    } catch (JsonParseException e) {
      throw new CollectionException(where + ": not a valid shard record: " + e.getMessage());
    }
  }

  /**
   * The manifest of a collection of these shards, as {@code manifest.json} holds it: the same
   * checks as {@link CollectionWriter#commit} (at least one shard, each document in one shard).
   */
  public static String json(String modelFingerprint, ShardLayout layout, String memDtype, String indexFactory,
      List<ShardEntry> shards) {
    Manifest m = create(modelFingerprint, layout, memDtype, indexFactory);
    CollectionWriter.checkShards(shards);
    m.shards.addAll(shards);
    return GSON.toJson(m);
  }

  /** Parses a manifest read from elsewhere (a Hadoop filesystem) with every check of {@link #read}. */
  public static Manifest parse(String json, String where) {
    Manifest m;
    try {
      m = GSON.fromJson(json, Manifest.class);
    } catch (JsonParseException e) {
      throw new CollectionException(where + ": not a valid manifest: " + e.getMessage());
    }
    return checked(m, Path.of(where));
  }

  /** Writes the manifest to a temporary file and renames it into place: the commit point. */
  void write(Path collection) throws IOException {
    String json = GSON.toJson(this);
    io.longmem.io.AtomicFiles.write(collection.resolve(FILE), tmp -> Files.writeString(tmp, json, StandardCharsets.UTF_8));
  }
}
