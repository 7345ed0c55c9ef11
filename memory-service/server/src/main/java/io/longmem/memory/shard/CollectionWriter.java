package io.longmem.memory.shard;

import io.longmem.io.InputException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * Creates a collection directory: shards are written under {@code .staging/} and renamed into
 * {@code shards/} when complete; {@link #commit} writes {@code manifest.json} last. A writer that
 * dies leaves no manifest, so nothing reads the collection as complete.
 */
public final class CollectionWriter implements AutoCloseable {
  static final String STAGING = ".staging";
  static final String SHARDS = "shards";
  /** Keys buffered per shard and layer to train IVF/PQ indexes. */
  public static final int DEFAULT_TRAINING_ROWS = 65_536;

  private final Path dir;
  private final Manifest manifest;
  private final BufferAllocator allocator = new RootAllocator();
  private int trainingRows = DEFAULT_TRAINING_ROWS;
  /** Per layer, the trained and still empty indexes of the first shard that trained: later shards start from copies. */
  private final java.util.Map<Integer, io.longmem.memory.faiss.FaissIndex[]> templates =
      new java.util.concurrent.ConcurrentHashMap<>();

  private CollectionWriter(Path dir, Manifest manifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  /**
   * Starts a new collection in {@code dir}, which must not hold a committed one.
   *
   * @param modelFingerprint identifies the model whose memory this is; readers refuse other models
   * @param memDtype the model's mem_dtype (recorded; values are stored in {@code layout.storage()})
   * @param indexFactory FAISS factory string for every (shard, layer, head) index
   */
  public static CollectionWriter create(Path dir, String modelFingerprint, ShardLayout layout, String memDtype,
      String indexFactory) throws IOException {
    if (Files.exists(dir.resolve(Manifest.FILE))) {
      throw new CollectionException(dir + " already holds a committed collection; choose another directory "
          + "or delete it first");
    }
    if (modelFingerprint == null || modelFingerprint.isBlank()) {
      throw new InputException("a collection needs the fingerprint of the model that wrote it");
    }
    Files.createDirectories(dir);
    return new CollectionWriter(dir, Manifest.create(modelFingerprint, layout, memDtype, indexFactory));
  }

  /** Keys buffered to train IVF/PQ indexes (default {@value #DEFAULT_TRAINING_ROWS}). */
  public CollectionWriter trainingRows(int rows) {
    if (rows < 1) {
      throw new InputException("training rows must be >= 1");
    }
    this.trainingRows = rows;
    return this;
  }

  public Path dir() {
    return dir;
  }

  public ShardLayout layout() {
    return manifest.layout();
  }

  /** A writer for one new shard; {@link ShardWriter#finish} moves it into the collection. */
  public ShardWriter newShard(String id) throws IOException {
    return newShard(id, "");
  }

  /**
   * A writer for one attempt at a shard: attempts stage in directories of their own, and when two
   * finish (a retried or speculative task), the first rename wins and the other is dropped.
   */
  public ShardWriter newShard(String id, String attempt) throws IOException {
    return new ShardWriter(dir, id, attempt, manifest.layout(), manifest.indexFactory(), trainingRows, allocator,
        templates);
  }

  /**
   * A shard an earlier, interrupted run already finished (a run that resumes skips it), or empty.
   * Its files are checked against their recorded sizes; a shard that fails the check is refused.
   */
  public java.util.Optional<Manifest.ShardEntry> finishedShard(String id) throws IOException {
    return finishedShard(dir, id);
  }

  /** See {@link #finishedShard(String)}. */
  public static java.util.Optional<Manifest.ShardEntry> finishedShard(Path collection, String id) throws IOException {
    Path shard = collection.resolve(SHARDS).resolve(id);
    if (!Files.isDirectory(shard)) {
      return java.util.Optional.empty();
    }
    Manifest.ShardEntry e = Manifest.readShardRecord(shard);
    for (Manifest.FileEntry f : e.files()) {
      Path p = collection.resolve(f.path()).normalize();
      if (!p.startsWith(collection.normalize())) {
        throw new CollectionException(shard + "/" + Manifest.SHARD_RECORD + " names a file outside the collection: "
            + ManifestChecks.quote(f.path()));
      }
      if (!Files.isRegularFile(p) || Files.size(p) != f.bytes()) {
        throw new CollectionException(p + ": missing or not " + f.bytes() + " bytes as recorded in " + shard
            + "/" + Manifest.SHARD_RECORD);
      }
    }
    return java.util.Optional.of(e);
  }

  /** Ids of the shards finished so far in {@code shards/} (committed or not). */
  public static List<String> finishedShardIds(Path collection) throws IOException {
    Path shards = collection.resolve(SHARDS);
    if (!Files.isDirectory(shards)) {
      return List.of();
    }
    try (var s = Files.list(shards)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  /** Writes the manifest listing these shards: the collection is complete from here on. */
  public void commit(List<Manifest.ShardEntry> shards) throws IOException {
    checkShards(shards);
    manifest.shards.clear();
    manifest.shards.addAll(shards);
    manifest.write(dir);
    io.longmem.io.FileTrees.deleteRecursively(dir.resolve(STAGING)); // attempts that lost, or died
    java.util.Set<String> listed = new java.util.HashSet<>();
    shards.forEach(s -> listed.add(s.id()));
    for (String id : finishedShardIds(dir)) {
      if (!listed.contains(id)) {
        io.longmem.io.FileTrees.deleteRecursively(dir.resolve(SHARDS).resolve(id)); // finished by a run of another plan
      }
    }
  }

  /** What every commit checks: at least one shard, and each document in one shard only. */
  static void checkShards(List<Manifest.ShardEntry> shards) {
    if (shards.isEmpty()) {
      throw new InputException("a collection needs at least one shard");
    }
    java.util.Set<String> docs = new java.util.HashSet<>();
    for (Manifest.ShardEntry s : shards) {
      for (Manifest.DocumentEntry d : s.documents()) {
        if (!docs.add(d.id())) {
          throw new CollectionException("document " + d.id() + " is in more than one shard");
        }
      }
    }
  }

  @Override
  public void close() {
    templates.values().forEach(t -> java.util.Arrays.stream(t).forEach(io.longmem.memory.faiss.FaissIndex::close));
    templates.clear();
    allocator.close();
  }
}
