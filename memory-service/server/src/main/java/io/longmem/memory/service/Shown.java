package io.longmem.memory.service;

import java.nio.file.Path;
import java.util.Collection;
import java.util.regex.Pattern;

/**
 * What of a request or of the node a status message may show a client: names and ids cut to a
 * bounded length (a request may carry a megabyte-long name, which would otherwise come back in
 * every error), and no server paths (the node logs those; the client learns the collection and
 * the reason).
 */
final class Shown {
  static final int MAX_CHARS = 128;
  static final int MAX_NAMES = 8;
  /** an absolute path's directories: "/a/b/" of "/a/b/file" */
  private static final Pattern DIRECTORIES = Pattern.compile("(?<![\\w.])(?:[A-Za-z]:)?[/\\\\](?:[^/\\\\\\s:,;'\"()\\[\\]]+[/\\\\])+");

  private Shown() {}

  /** A name or id as a message may show it: at most {@link #MAX_CHARS} characters, then its length. */
  static String name(String s) {
    return cut(s, MAX_CHARS);
  }

  private static String cut(String s, int max) {
    if (s == null) {
      return "null";
    }
    if (s.length() <= max) {
      return s;
    }
    int at = Character.isHighSurrogate(s.charAt(max - 1)) ? max - 1 : max;
    return s.substring(0, at) + "...(" + s.length() + " chars)";
  }

  /** Names as a message may show them: the first {@link #MAX_NAMES}, each cut, then how many more. */
  static String names(Collection<String> names) {
    StringBuilder b = new StringBuilder("[");
    int i = 0;
    for (String n : names) {
      if (i == MAX_NAMES) {
        b.append(", ...and ").append(names.size() - MAX_NAMES).append(" more");
        break;
      }
      b.append(i++ == 0 ? "" : ", ").append(name(n));
    }
    return b.append(']').toString();
  }

  /**
   * Why a collection was refused, for a client: the collection's directory (and any other absolute
   * path's directories) left out, so files are named relative to the collection.
   */
  static String withoutPaths(String message, Path dir) {
    String m = message == null ? "no reason given" : message;
    for (Path p : new Path[] {dir.toAbsolutePath().normalize(), dir}) {
      String d = p.toString();
      if (!d.isEmpty() && !d.equals(".")) {
        m = m.replace(d + p.getFileSystem().getSeparator(), "").replace(d, "<collection>");
      }
    }
    return cut(DIRECTORIES.matcher(m).replaceAll(""), 4 * MAX_CHARS);
  }
}
