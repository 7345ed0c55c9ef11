package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import io.longmem.memory.fs.HadoopConf;
import io.longmem.memory.shard.CollectionException;
import io.longmem.memory.shard.Manifest;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.Serializable;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileContext;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An encode's output on a Hadoop filesystem ({@code hdfs://}, {@code s3a://}, ...). Tasks write
 * each shard locally, then upload it through Hadoop's FileSystem API and commit it:
 *
 * <ul>
 *   <li>{@link Commit#RENAME} (HDFS, viewfs, webhdfs: a directory rename is atomic): the attempt
 *       uploads to {@code .staging/<shard>.<attempt>/} and renames it to {@code shards/<shard>/},
 *       refusing to replace one that exists: the first rename wins, the loser deletes its upload;
 *   <li>{@link Commit#MANIFEST} (object stores: a rename copies object by object): the attempt
 *       uploads to {@code shards/<shard>.<attempt>/}, its {@code shard.json} last (one PUT, so
 *       its presence means the upload is whole), and the manifest names the attempt whose result
 *       the driver received; the commit deletes the other attempts.
 * </ul>
 *
 * The driver writes {@code job.json} first and {@code manifest.json} last, each whole: a temporary
 * file renamed (rename mode) or a single PUT (manifest mode). Serializable: tasks rebuild the
 * filesystem from the driver's Hadoop settings.
 */
final class HadoopOutput implements OutputDir, Serializable {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(HadoopOutput.class);
  /** Filesystems whose directory rename is atomic. */
  private static final Set<String> RENAME_SCHEMES = Set.of("hdfs", "viewfs", "webhdfs", "swebhdfs", "file");

  /** How a shard becomes part of the collection. */
  enum Commit { RENAME, MANIFEST }

  private final String location;
  private final URI uri;
  private final Commit commit;
  private final Map<String, String> settings;
  private transient FileSystem fs;
  private transient Configuration conf;

  private HadoopOutput(String location, URI uri, Commit commit, Map<String, String> settings) {
    this.location = location;
    this.uri = uri;
    this.commit = commit;
    this.settings = settings;
  }

  /**
   * The output at a Hadoop URI.
   *
   * @param commit auto, rename or manifest (auto: rename where a directory rename is atomic)
   * @param conf the driver's Hadoop configuration (Spark's), shipped to the tasks
   */
  static HadoopOutput of(String location, String commit, Configuration conf) {
    URI uri = HadoopConf.uri(location.endsWith("/") ? location.substring(0, location.length() - 1) : location,
        "--output");
    String scheme = uri.getScheme().toLowerCase(Locale.ROOT);
    Commit mode = switch (commit == null ? "auto" : commit.toLowerCase(Locale.ROOT)) {
      case "auto" -> RENAME_SCHEMES.contains(scheme) ? Commit.RENAME : Commit.MANIFEST;
      case "rename" -> Commit.RENAME;
      case "manifest" -> Commit.MANIFEST;
      default -> throw new InputException("--commit must be auto, rename or manifest, got " + commit);
    };
    return new HadoopOutput(location, uri, mode, new java.util.LinkedHashMap<>(HadoopConf.snapshot(conf)));
  }

  Commit commit() {
    return commit;
  }

  private synchronized FileSystem fs() throws IOException {
    if (fs == null) {
      conf = HadoopConf.of(settings);
      fs = HadoopConf.fileSystem(uri, conf, "--output");
    }
    return fs;
  }

  private Path root() {
    return new Path(uri);
  }

  private Path path(String relative) {
    return new Path(root(), relative);
  }

  // ---- OutputDir: the driver's plan and checks ----

  @Override
  public String describe() {
    return location;
  }

  @Override
  public boolean exists(String name) throws IOException {
    return fs().exists(path(name));
  }

  @Override
  public String read(String name) throws IOException {
    try (InputStream in = fs().open(path(name))) {
      return new String(in.readNBytes(64 << 20), StandardCharsets.UTF_8); // a plan or a record: small
    }
  }

  @Override
  public boolean nonEmpty() throws IOException {
    FileSystem f = fs();
    return f.exists(root()) && (f.getFileStatus(root()).isFile() || f.listStatus(root()).length > 0);
  }

  @Override
  public void create() throws IOException {
    fs().mkdirs(root());
  }

  @Override
  public void writeWhole(String name, String content) throws IOException {
    byte[] bytes = content.getBytes(StandardCharsets.UTF_8);
    Path target = path(name);
    if (commit == Commit.MANIFEST) {
      try (OutputStream out = fs().create(target, true)) { // an object appears whole when it is closed
        out.write(bytes);
      }
      return;
    }
    Path tmp = path("." + name + "." + java.util.UUID.randomUUID() + ".tmp");
    try {
      try (OutputStream out = fs().create(tmp, false)) {
        out.write(bytes);
      }
      if (!fs().rename(tmp, target)) {
        throw new IOException("could not rename " + tmp + " to " + target);
      }
    } finally {
      fs().delete(tmp, false);
    }
  }

  @Override
  public List<String> finishedShardIds() throws IOException {
    Set<String> ids = new TreeSet<>();
    for (FileStatus s : shardDirs()) {
      String name = s.getPath().getName();
      if (commit == Commit.RENAME) {
        ids.add(name);
      } else if (name.contains(".") && fs().exists(new Path(s.getPath(), Manifest.SHARD_RECORD))) {
        ids.add(name.substring(0, name.lastIndexOf('.')));
      }
    }
    return new ArrayList<>(ids);
  }

  private FileStatus[] shardDirs() throws IOException {
    Path shards = path("shards");
    if (!fs().exists(shards)) {
      return new FileStatus[0];
    }
    return fs().listStatus(shards, p -> true);
  }

  // ---- tasks ----

  /** A shard an earlier run finished, checked against its recorded sizes, or empty. */
  Optional<Manifest.ShardEntry> finishedShard(String id) throws IOException {
    List<Path> candidates = new ArrayList<>();
    if (commit == Commit.RENAME) {
      candidates.add(path("shards/" + id));
    } else {
      for (FileStatus s : shardDirs()) {
        if (s.getPath().getName().startsWith(id + ".")) {
          candidates.add(s.getPath());
        }
      }
    }
    for (Path dir : candidates) {
      Path record = new Path(dir, Manifest.SHARD_RECORD);
      if (!fs().exists(record)) {
        if (commit == Commit.RENAME && fs().exists(dir)) {
          throw new CollectionException(location + "/shards/" + id + " has no " + Manifest.SHARD_RECORD
              + ": not a finished shard");
        }
        continue; // an attempt still uploading, or one that died
      }
      Manifest.ShardEntry e;
      try (InputStream in = fs().open(record)) {
        e = Manifest.parseShardRecord(new String(in.readNBytes(64 << 20), StandardCharsets.UTF_8), record.toString());
      }
      for (Manifest.FileEntry f : e.files()) {
        Path p = path(f.path());
        if (!f.path().startsWith(e.dir() + "/") || f.path().contains("..")) {
          throw new CollectionException(record + " names a file outside its shard: " + f.path());
        }
        if (!fs().exists(p) || fs().getFileStatus(p).getLen() != f.bytes()) {
          throw new CollectionException(p + ": missing or not " + f.bytes() + " bytes as recorded in " + record);
        }
      }
      return Optional.of(e);
    }
    return Optional.empty();
  }

  /**
   * Uploads a shard written locally ({@code local}: its directory, holding {@code shard.json})
   * and commits it; returns the entry of the shard that the collection holds (another attempt's,
   * when that one committed first).
   */
  Manifest.ShardEntry commitShard(String id, String attempt, java.nio.file.Path local, Manifest.ShardEntry entry)
      throws IOException {
    String name = attempt.isEmpty() ? id : id + "." + attempt;
    if (commit == Commit.MANIFEST) {
      Path dir = path("shards/" + name);
      Manifest.ShardEntry moved = entry.movedTo("shards/" + name);
      fs().delete(dir, true); // a leftover of this very attempt
      upload(local, dir);
      try (OutputStream out = fs().create(new Path(dir, Manifest.SHARD_RECORD), false)) {
        out.write(Manifest.shardRecordJson(moved).getBytes(StandardCharsets.UTF_8)); // last: the upload is whole
      }
      return moved;
    }
    Path staging = path(".staging/" + name);
    Path target = path("shards/" + id);
    fs().delete(staging, true);
    upload(local, staging);
    try (OutputStream out = fs().create(new Path(staging, Manifest.SHARD_RECORD), false)) {
      out.write(Manifest.shardRecordJson(entry).getBytes(StandardCharsets.UTF_8));
    }
    fs().mkdirs(target.getParent());
    try {
      FileContext.getFileContext(fs().getUri(), conf).rename(staging, target, Options.Rename.NONE);
      return entry;
    } catch (FileAlreadyExistsException e) {
      // another attempt of this shard (a retried or speculative task) committed first: its
      // directory arrived whole by rename, so keep it and drop this upload
      LOG.info("{}: attempt {} lost to an earlier commit of the shard; its upload is deleted", id, attempt);
      fs().delete(staging, true);
      return finishedShard(id).orElseThrow(() -> new IOException(target + " exists and is not a finished shard"));
    }
  }

  /** Copies a local shard's data files (not its record) into {@code dir}. */
  private void upload(java.nio.file.Path local, Path dir) throws IOException {
    fs().mkdirs(dir);
    try (var files = java.nio.file.Files.list(local)) {
      for (java.nio.file.Path f : files.sorted().toList()) {
        if (f.getFileName().toString().equals(Manifest.SHARD_RECORD)) {
          continue;
        }
        fs().copyFromLocalFile(false, true, new Path(f.toUri()), new Path(dir, f.getFileName().toString()));
      }
    }
  }

  // ---- the driver's commit ----

  /** Writes the manifest (last), then deletes staging and every shard directory it does not name. */
  void commitManifest(String manifestJson, List<Manifest.ShardEntry> shards) throws IOException {
    if (exists(Manifest.FILE)) {
      throw new InputException("output " + location + " already holds a committed collection");
    }
    writeWhole(Manifest.FILE, manifestJson);
    fs().delete(path(".staging"), true); // attempts that lost, or died
    Set<String> listed = new java.util.HashSet<>();
    shards.forEach(s -> listed.add(s.dir().substring("shards/".length())));
    for (FileStatus s : shardDirs()) {
      if (!listed.contains(s.getPath().getName())) {
        fs().delete(s.getPath(), true); // another attempt's upload, or a shard of another plan
      }
    }
  }
}
