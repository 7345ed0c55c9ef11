package io.longmem.memory.fs;

import io.longmem.io.FileTrees;
import io.longmem.memory.shard.CollectionException;
import io.longmem.memory.shard.Manifest;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Local copies of collections that live on a Hadoop filesystem: a node maps files, so a
 * collection given by URI is copied once into {@code cache_dir/<name>-<hash>/} (the hash of the
 * URI and of the shards copied: a node of a cluster copies only the shards it serves) and served
 * from there. A copy is made in a temporary directory beside it, each file's size and
 * SHA-256 checked against the manifest while it streams, and renamed into place whole. A cached
 * copy is used again when its manifest is the remote one byte for byte and every file it lists
 * has its size and checksum; anything else (a damaged or partial copy, a collection rewritten at
 * the URI) is fetched again.
 */
public final class CollectionCache {
  private static final Logger LOG = LoggerFactory.getLogger(CollectionCache.class);
  /** A manifest is read into memory whole: at most this much (millions of documents fit). */
  static final int MAX_MANIFEST_BYTES = 1 << 30;

  /** A collection's local copy and whether this call fetched it. */
  public record Local(Path dir, boolean fetched) {}

  private final Path cacheDir;
  private final Configuration conf;
  private final boolean verify;

  /** @param verify check a reused copy's checksums (sizes are always checked; a fetch checks both) */
  public CollectionCache(Path cacheDir, Configuration conf, boolean verify) {
    this.cacheDir = cacheDir.toAbsolutePath().normalize();
    this.conf = conf;
    this.verify = verify;
  }

  /** The local copy of the collection at {@code location}, fetched if there is no sound one. */
  public Local localize(String location) throws IOException {
    return localize(location, null);
  }

  /**
   * The same with only some shards copied (the manifest is copied whole).
   *
   * @param shards ids of the shards to copy; null: all
   */
  public Local localize(String location, java.util.Set<String> shards) throws IOException {
    URI uri = HadoopConf.uri(location, "collection");
    FileSystem fs = HadoopConf.fileSystem(uri, conf, "collection");
    org.apache.hadoop.fs.Path root = new org.apache.hadoop.fs.Path(uri);
    org.apache.hadoop.fs.Path manifestFile = new org.apache.hadoop.fs.Path(root, Manifest.FILE);
    byte[] manifestBytes;
    try (InputStream in = fs.open(manifestFile)) {
      manifestBytes = in.readNBytes(MAX_MANIFEST_BYTES + 1);
    } catch (java.io.FileNotFoundException e) {
      throw new CollectionException(location + " is not a committed collection: no " + Manifest.FILE);
    }
    if (manifestBytes.length > MAX_MANIFEST_BYTES) {
      throw new CollectionException(location + "/" + Manifest.FILE + " is larger than " + (MAX_MANIFEST_BYTES >> 20)
          + " MiB: not a manifest this node reads");
    }
    Manifest manifest = Manifest.parse(new String(manifestBytes, StandardCharsets.UTF_8), location + "/" + Manifest.FILE);
    List<Manifest.ShardEntry> wanted = manifest.shards().stream()
        .filter(s -> shards == null || shards.contains(s.id())).toList();
    Path entry = cacheDir.resolve(entryName(uri, shards));
    String stale = soundness(entry, manifestBytes, wanted, verify);
    if (stale == null) {
      LOG.info("collection {}: using the cached copy at {}", location, entry);
      return new Local(entry, false);
    }
    LOG.info("collection {}: fetching into {} ({})", location, entry, stale);
    Files.createDirectories(cacheDir);
    Path tmp = Files.createTempDirectory(cacheDir, "." + entry.getFileName() + ".");
    try {
      long bytes = 0;
      long t0 = System.nanoTime();
      for (Manifest.ShardEntry s : wanted) {
        for (Manifest.FileEntry f : s.files()) {
          Path local = tmp.resolve(f.path()).normalize();
          if (!local.startsWith(tmp)) {
            throw new CollectionException(location + ": manifest names a file outside the collection: " + f.path());
          }
          copy(fs, new org.apache.hadoop.fs.Path(root, f.path()), local, f, location);
          bytes += f.bytes();
        }
      }
      Files.write(tmp.resolve(Manifest.FILE), manifestBytes);
      replace(tmp, entry);
      LOG.info("collection {}: fetched {} bytes in {} ms", location, bytes, (System.nanoTime() - t0) / 1_000_000);
      return new Local(entry, true);
    } finally {
      FileTrees.deleteRecursively(tmp);
    }
  }

  /** The cache entry of a URI and a set of shards: readable, and distinct for distinct ones. */
  static String entryName(URI uri, java.util.Set<String> shards) {
    String path = uri.getPath().replaceAll("/+$", "");
    String last = path.substring(path.lastIndexOf('/') + 1).replaceAll("[^A-Za-z0-9._-]", "_");
    String key = uri + "\n" + (shards == null ? "*" : String.join("\n", new java.util.TreeSet<>(shards)));
    String hash = sha256Hex(key.getBytes(StandardCharsets.UTF_8)).substring(0, 16);
    return (last.isEmpty() || last.startsWith(".") ? "collection" : last) + "-" + hash;
  }

  /** Null when the entry is a sound copy of this manifest, else why not. */
  private static String soundness(Path entry, byte[] manifestBytes, List<Manifest.ShardEntry> wanted,
      boolean verify) throws IOException {
    Path m = entry.resolve(Manifest.FILE);
    if (!Files.isRegularFile(m)) {
      return "not cached";
    }
    if (!java.util.Arrays.equals(Files.readAllBytes(m), manifestBytes)) {
      return "the collection at the URI changed";
    }
    for (Manifest.ShardEntry s : wanted) {
      for (Manifest.FileEntry f : s.files()) {
        Path p = entry.resolve(f.path()).normalize();
        if (!p.startsWith(entry) || !Files.isRegularFile(p) || Files.size(p) != f.bytes()) {
          return "cached " + f.path() + " is missing or not " + f.bytes() + " bytes";
        }
        if (verify && !FileTrees.sha256(p).equals(f.sha256())) {
          return "cached " + f.path() + " is damaged (checksum)";
        }
      }
    }
    return null;
  }

  /** Streams one file, checking its size and SHA-256 against the manifest on the way. */
  private static void copy(FileSystem fs, org.apache.hadoop.fs.Path from, Path to, Manifest.FileEntry f,
      String location) throws IOException {
    Files.createDirectories(to.getParent());
    MessageDigest sha = sha256();
    long n = 0;
    byte[] buf = new byte[1 << 20];
    try (InputStream in = new DigestInputStream(fs.open(from), sha); OutputStream out = Files.newOutputStream(to)) {
      for (int r; (r = in.read(buf)) >= 0; ) {
        n += r;
        if (n > f.bytes()) {
          break; // longer than the manifest says: refused below, without reading the rest
        }
        out.write(buf, 0, r);
      }
    } catch (java.io.FileNotFoundException e) {
      throw new CollectionException(location + "/" + f.path() + " is missing");
    }
    if (n != f.bytes()) {
      throw new CollectionException(location + "/" + f.path() + " is " + (n > f.bytes() ? "longer" : n + " bytes")
          + ", the manifest says " + f.bytes() + " bytes");
    }
    if (!HexFormat.of().formatHex(sha.digest()).equals(f.sha256())) {
      throw new CollectionException(location + "/" + f.path() + " does not match its checksum in the manifest");
    }
  }

  /** Puts a complete copy in place of the entry: the old one is moved aside first, then deleted. */
  private static void replace(Path tmp, Path entry) throws IOException {
    if (Files.exists(entry)) {
      Path old = Files.createTempDirectory(entry.getParent(), "." + entry.getFileName() + ".old.");
      Files.move(entry, old.resolve("entry"), StandardCopyOption.ATOMIC_MOVE);
      FileTrees.deleteRecursively(old);
    }
    Files.move(tmp, entry, StandardCopyOption.ATOMIC_MOVE);
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String sha256Hex(byte[] b) {
    return HexFormat.of().formatHex(sha256().digest(b));
  }
}
