package io.longmem.io;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Small JSON helpers for the CLI's id lists. */
public final class Json {
  private Json() {}

  /** Reads a JSON list of ints (token ids). */
  public static long[] readIds(Path file) throws IOException {
    JsonElement e;
    try {
      e = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8));
    } catch (com.google.gson.JsonParseException ex) {
      throw new InputException(file + ": not valid JSON: " + ex.getMessage());
    }
    if (!e.isJsonArray()) {
      throw new InputException(file + ": expected a JSON list of token ids");
    }
    JsonArray a = e.getAsJsonArray();
    long[] ids = new long[a.size()];
    for (int i = 0; i < ids.length; i++) {
      JsonElement x = a.get(i);
      if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isNumber()
          || x.getAsDouble() != Math.rint(x.getAsDouble())) {
        throw new InputException(file + ": entry " + i + " (" + x + ") is not an integer token id");
      }
      ids[i] = x.getAsLong();
    }
    return ids;
  }

  public static String idList(long[] ids) {
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < ids.length; i++) {
      sb.append(i == 0 ? "" : ", ").append(ids[i]);
    }
    return sb.append(']').toString();
  }

  /** Writes text atomically (temporary file, then rename). */
  public static void writeAtomically(Path file, String text) throws IOException {
    AtomicFiles.write(file, tmp -> Files.writeString(tmp, text, StandardCharsets.UTF_8));
  }
}
