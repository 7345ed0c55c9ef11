package io.longmem.memory.shard;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * What a manifest must satisfy before anything it names is opened. A manifest is input like any
 * other (an operator's edit, a copy from elsewhere, a hostile file): its shard ids become paths,
 * its file list is what gets verified, and its document ranges are trusted by every search. A
 * manifest that breaks a rule is refused at load, with the rule, instead of serving files from
 * outside the collection, skipping verification, or failing at query time.
 */
final class ManifestChecks {
  /** Shard ids are file names: what {@link ShardWriter} accepts, and never "." or "..". */
  private static final Pattern SHARD_ID = Pattern.compile("[A-Za-z0-9._-]{1,200}");
  /** The attempt part of a shard's directory shards/<id>.<attempt> (committed by manifest). */
  private static final Pattern ATTEMPT = Pattern.compile("[A-Za-z0-9_-]{1,100}");
  /** Layer numbers index arrays; heads and head_dim size every read: bounds far above any model. */
  static final int MAX_LAYER = 1 << 12;
  static final int MAX_HEADS = 1 << 12;
  static final int MAX_HEAD_DIM = 1 << 14;
  static final long MAX_WIDTH = 1 << 20;

  private ManifestChecks() {}

  /** Checks the manifest's own content (no file is touched); {@code file} names it in errors. */
  static void check(Manifest m, Path file) {
    Set<Integer> layers = new HashSet<>();
    for (Integer l : m.layers) {
      if (l == null || l < 0 || l >= MAX_LAYER || !layers.add(l)) {
        throw new CollectionException(file + ": layers " + m.layers + " must be distinct numbers in [0, "
            + MAX_LAYER + ")");
      }
    }
    if (m.heads <= 0 || m.heads > MAX_HEADS || m.headDim <= 0 || m.headDim > MAX_HEAD_DIM
        || (long) m.heads * m.headDim > MAX_WIDTH) {
      throw new CollectionException(file + ": heads " + m.heads + " x head_dim " + m.headDim
          + " is outside what a collection may hold (heads <= " + MAX_HEADS + ", head_dim <= " + MAX_HEAD_DIM
          + ", heads x head_dim <= " + MAX_WIDTH + ")");
    }
    Set<String> ids = new HashSet<>();
    Set<String> dirs = new HashSet<>();
    for (Manifest.ShardEntry s : m.shards) {
      if (s == null) {
        throw new CollectionException(file + ": a shard entry is null");
      }
      checkShard(s, file);
      if (!ids.add(s.id)) {
        throw new CollectionException(file + ": shard id " + s.id + " appears twice");
      }
      String base = CollectionWriter.SHARDS + "/" + s.id;
      if (s.dir != null && !(s.dir.equals(base)
          || s.dir.startsWith(base + ".") && ATTEMPT.matcher(s.dir.substring(base.length() + 1)).matches())) {
        throw new CollectionException(file + ": shard " + s.id + " has dir " + quote(s.dir)
            + ": it must be shards/<id> or shards/<id>.<attempt> (letters, digits, '_', '-')");
      }
      if (!dirs.add(s.dir())) {
        throw new CollectionException(file + ": two shards share the directory " + quote(s.dir()));
      }
    }
  }

  private static void checkShard(Manifest.ShardEntry s, Path file) {
    if (s.id == null || !SHARD_ID.matcher(s.id).matches() || s.id.contains("..") || s.id.equals(".")) {
      throw new CollectionException(file + ": shard id " + quote(s.id)
          + " is not a plain name ([A-Za-z0-9._-], at most 200, no \"..\")");
    }
    String where = file + ": shard " + s.id;
    if (s.rows < 0) {
      throw new CollectionException(where + " has " + s.rows + " rows");
    }
    if (s.files == null || s.documents == null) {
      throw new CollectionException(where + " lists no files or no documents");
    }
    for (Manifest.FileEntry f : s.files) {
      if (f == null || f.path() == null || f.bytes() < 0) {
        throw new CollectionException(where + ": a file entry without a path or with a negative size");
      }
    }
    // documents are the shard's rows in order, each a non-empty run: [0, e1), [e1, e2), ... [.., rows)
    long next = 0;
    for (int i = 0; i < s.documents.size(); i++) {
      Manifest.DocumentEntry d = s.documents.get(i);
      if (d == null || d.id() == null) {
        throw new CollectionException(where + ": document " + i + " has no id");
      }
      if (d.begin() != next || d.end() <= d.begin() || d.end() > s.rows) {
        throw new CollectionException(where + ": document " + quote(d.id()) + " has rows [" + d.begin() + ", "
            + d.end() + "), expected a non-empty range from " + next + " within the shard's " + s.rows
            + " rows (documents are its rows in order, without gaps or overlaps)");
      }
      next = d.end();
    }
    if (next != s.rows) {
      throw new CollectionException(where + ": its documents cover rows [0, " + next + ") of " + s.rows);
    }
  }

  /**
   * Checks that the shard lists every file it will open (so that each is verified: size always,
   * SHA-256 when asked) and that every file it lists lies inside the collection once links are
   * resolved.
   *
   * @param realDir the collection directory, {@link Path#toRealPath real}
   */
  static void checkFiles(Path dir, Path realDir, Manifest.ShardEntry s, ShardLayout layout) throws IOException {
    Set<String> listed = new HashSet<>();
    for (Manifest.FileEntry f : s.files) {
      Path p = dir.resolve(f.path()).normalize();
      if (!p.startsWith(dir.normalize())) {
        throw new CollectionException(dir + ": manifest names a file outside the collection: " + quote(f.path()));
      }
      if (!Files.isRegularFile(p)) {
        throw new CollectionException(p + " is missing (shard " + s.id + ")");
      }
      if (!p.toRealPath().startsWith(realDir)) {
        throw new CollectionException(p + " links to a file outside the collection (shard " + s.id + ")");
      }
      listed.add(dir.normalize().relativize(p).toString().replace('\\', '/'));
    }
    for (String needed : usedFiles(s, layout)) {
      if (!listed.contains(needed)) {
        throw new CollectionException(dir + ": shard " + s.id + " uses " + needed
            + ", which its manifest entry does not list (every file a shard uses is listed and verified)");
      }
    }
  }

  /** The files a shard opens, relative to the collection: per layer its Arrow file and one index per head. */
  static List<String> usedFiles(Manifest.ShardEntry s, ShardLayout layout) {
    String base = s.dir() + "/";
    List<String> out = new java.util.ArrayList<>();
    for (int layer : layout.layers()) {
      out.add(base + ShardLayout.layerFile(layer));
      for (int h = 0; h < layout.heads(); h++) {
        out.add(base + ShardLayout.indexFile(layer, h));
      }
    }
    return out;
  }

  /** Input echoed in an error: quoted and cut to a readable length. */
  static String quote(String s) {
    if (s == null) {
      return "(none)";
    }
    return "\"" + (s.length() > 120 ? s.substring(0, 120) + "...\" (" + s.length() + " characters)" : s + "\"");
  }
}
