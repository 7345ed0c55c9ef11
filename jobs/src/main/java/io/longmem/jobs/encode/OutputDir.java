package io.longmem.jobs.encode;

import java.io.IOException;
import java.util.List;

/**
 * What {@link EncodeOutput} needs of an output directory, local or on a Hadoop filesystem: the
 * plan and the manifest are small files written whole, and finished shards are listed by id.
 */
interface OutputDir {
  /** The directory as the user named it, for messages. */
  String describe();

  boolean exists(String name) throws IOException;

  String read(String name) throws IOException;

  /** True when the directory exists and holds anything. */
  boolean nonEmpty() throws IOException;

  void create() throws IOException;

  /** Writes a small file so that a reader sees all of it or nothing. */
  void writeWhole(String name, String content) throws IOException;

  /** Ids of the shards finished so far (committed or not). */
  List<String> finishedShardIds() throws IOException;

  /** The local directory. */
  static OutputDir local(java.nio.file.Path dir) {
    return new OutputDir() {
      @Override
      public String describe() {
        return dir.toString();
      }

      @Override
      public boolean exists(String name) {
        return java.nio.file.Files.exists(dir.resolve(name));
      }

      @Override
      public String read(String name) throws IOException {
        return java.nio.file.Files.readString(dir.resolve(name), java.nio.charset.StandardCharsets.UTF_8);
      }

      @Override
      public boolean nonEmpty() throws IOException {
        if (!java.nio.file.Files.isDirectory(dir)) {
          return false;
        }
        try (var entries = java.nio.file.Files.list(dir)) {
          return entries.findAny().isPresent();
        }
      }

      @Override
      public void create() throws IOException {
        java.nio.file.Files.createDirectories(dir);
      }

      @Override
      public void writeWhole(String name, String content) throws IOException {
        io.longmem.io.AtomicFiles.write(dir.resolve(name),
            tmp -> java.nio.file.Files.writeString(tmp, content, java.nio.charset.StandardCharsets.UTF_8));
      }

      @Override
      public List<String> finishedShardIds() throws IOException {
        return io.longmem.memory.shard.CollectionWriter.finishedShardIds(dir);
      }
    };
  }
}
