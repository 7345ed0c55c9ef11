package io.longmem.memory.shard;

import com.google.gson.FieldNamingPolicy;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
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
  public static final class ShardEntry {
    String id;
    long rows;
    List<FileEntry> files = new ArrayList<>();
    List<DocumentEntry> documents = new ArrayList<>();

    public String id() {
      return id;
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
  public record FileEntry(String path, long bytes, String sha256) {}

  /** A document's tokens are rows [begin, end) of its shard, in reading order. */
  public record DocumentEntry(String id, long begin, long end) {}

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
    return new ShardLayout(layers, heads, headDim, ShardLayout.Storage.parse(storageDtype));
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
    if (m == null || m.formatVersion != FORMAT_VERSION) {
      throw new CollectionException(file + ": format_version " + (m == null ? "missing" : m.formatVersion)
          + ", this longmem reads " + FORMAT_VERSION);
    }
    if (m.modelFingerprint == null || m.layers == null || m.shards == null || m.indexFactory == null
        || m.storageDtype == null) {
      throw new CollectionException(file + ": incomplete manifest (model_fingerprint, layers, shards, "
          + "index_factory and storage_dtype are required)");
    }
    m.layout();
    return m;
  }

  /** Writes the manifest to a temporary file and renames it into place: the commit point. */
  void write(Path collection) throws IOException {
    String json = GSON.toJson(this);
    io.longmem.util.AtomicFiles.write(collection.resolve(FILE), tmp -> Files.writeString(tmp, json, StandardCharsets.UTF_8));
  }
}
