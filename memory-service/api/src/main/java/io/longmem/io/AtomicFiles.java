package io.longmem.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** Writes a file completely under a temporary name beside it, then renames it into place. */
public final class AtomicFiles {
  private AtomicFiles() {}

  /** Writes the content of a file, given the temporary path to write it to. */
  public interface Writer {
    void writeTo(Path tmp) throws IOException;
  }

  /** A reader sees the old file or the new one, never half of it; the temporary goes on failure. */
  public static void write(Path file, Writer writer) throws IOException {
    Path dir = file.toAbsolutePath().getParent();
    Files.createDirectories(dir);
    Path tmp = Files.createTempFile(dir, "." + file.getFileName(), ".tmp");
    try {
      // createTempFile makes the file owner-only; the final file gets ordinary permissions (a
      // service run by another user must be able to read a collection).
      try {
        Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
      } catch (UnsupportedOperationException e) {
        // not a POSIX filesystem
      }
      writer.writeTo(tmp);
      Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }
}
