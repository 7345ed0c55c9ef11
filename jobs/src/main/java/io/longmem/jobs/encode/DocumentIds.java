package io.longmem.jobs.encode;

import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Whether a document id is an exact string. Ids name documents in a collection, so two distinct
 * ids must never become one: an id whose bytes are not UTF-8 (an overlong {@code C0 AF} that a
 * lenient decoder reads as {@code /}, a stray byte read as U+FFFD) or whose JSON escapes leave a
 * lone surrogate (which Spark's strings turn into {@code ?}) has no exact string, and is skipped
 * and counted rather than merged with the id it happens to decode to.
 */
final class DocumentIds {
  private DocumentIds() {}

  /** True when the bytes are well-formed UTF-8 (no overlong forms, no encoded surrogates). */
  static boolean isUtf8(byte[] bytes) {
    try {
      StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes));
      return true;
    } catch (CharacterCodingException e) {
      return false;
    }
  }

  /** True when the string has no lone surrogate, i.e. it survives a round trip through UTF-8. */
  static boolean isWellFormed(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
        i++;
      } else if (Character.isSurrogate(c)) {
        return false;
      }
    }
    return true;
  }

  /**
   * A file name as an id: the file system's bytes were decoded before we see them, so an
   * undecodable name shows as U+FFFD (or a lone surrogate).
   */
  static boolean isExactName(String name) {
    return isWellFormed(name) && name.indexOf('\uFFFD') < 0;
  }

  /** True when a binary id column's bytes are an exact string (null ids are counted elsewhere). */
  static boolean isExactBytes(byte[] bytes) {
    return bytes == null || isUtf8(bytes);
  }

  /**
   * True when the id field of one JSON line is an exact string. A line that is valid UTF-8 and has
   * no {@code \\u} escape decodes exactly (the common case, checked without parsing); otherwise the
   * line is parsed here and its id looked at. A line that does not parse is Spark's to call
   * malformed, so it passes.
   */
  static boolean isExactJsonId(byte[] line, String idField) {
    if (line == null) {
      return true;
    }
    boolean utf8 = isUtf8(line);
    if (utf8 && !hasUnicodeEscape(line)) {
      return true;
    }
    String text = new String(line, StandardCharsets.UTF_8); // U+FFFD where bytes are undecodable
    JsonElement id;
    try {
      JsonElement root = JsonParser.parseString(text);
      if (!root.isJsonObject()) {
        return true;
      }
      id = root.getAsJsonObject().get(idField);
    } catch (RuntimeException e) {
      return true;
    }
    if (id == null || !id.isJsonPrimitive() || !id.getAsJsonPrimitive().isString()) {
      return true;
    }
    String s = id.getAsString();
    return isWellFormed(s) && (utf8 || s.indexOf('\uFFFD') < 0);
  }

  private static boolean hasUnicodeEscape(byte[] line) {
    for (int i = 0; i + 1 < line.length; i++) {
      if (line[i] == '\\' && line[i + 1] == 'u') {
        return true;
      }
    }
    return false;
  }
}
