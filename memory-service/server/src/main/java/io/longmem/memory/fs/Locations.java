package io.longmem.memory.fs;

import java.util.regex.Pattern;

/**
 * Whether a configured location is a local path or a Hadoop URI, without loading Hadoop (a node
 * without Hadoop's client serves local collections as before).
 */
public final class Locations {
  private static final Pattern URI_SCHEME = Pattern.compile("[A-Za-z][A-Za-z0-9+.-]*:.*");

  private Locations() {}

  /** True for a URI of a filesystem other than the local one ({@code hdfs://}, {@code s3a://}). */
  public static boolean isRemote(String location) {
    return location != null && URI_SCHEME.matcher(location).matches() && !isFileUri(location)
        && location.contains("://");
  }

  /** True for a {@code file:} URI (a local path). */
  public static boolean isFileUri(String location) {
    return location != null && location.regionMatches(true, 0, "file:", 0, 5);
  }
}
