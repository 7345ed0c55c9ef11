package io.longmem.memory.security;

import com.google.gson.Gson;
import com.google.gson.JsonParseException;
import io.longmem.io.InputException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The tokens a node accepts, from a JSON file {@code {"tokens": [{"name", "roles", "sha256"}]}}:
 * only each token's SHA-256 is stored, so the file reveals no token. A presented token is hashed
 * and compared with every entry in constant time ({@link MessageDigest#isEqual}).
 */
public final class TokenStore {
  /** Largest tokens file read. */
  static final long MAX_FILE_BYTES = 1 << 20;

  private record Entry(Caller caller, byte[] sha256) {}

  private static final class FileForm {
    List<EntryForm> tokens;
  }

  private static final class EntryForm {
    String name;
    List<String> roles;
    String sha256;
  }

  private final List<Entry> entries;

  private TokenStore(List<Entry> entries) {
    this.entries = List.copyOf(entries);
  }

  /** Reads a tokens file; {@code key} is the config key that named it (for errors). */
  public static TokenStore load(Path file, String key) {
    String where = key + " " + file;
    String text;
    try {
      if (!Files.isRegularFile(file)) {
        throw new InputException(where + ": no such file");
      }
      if (Files.size(file) > MAX_FILE_BYTES) {
        throw new InputException(where + ": larger than " + MAX_FILE_BYTES + " bytes");
      }
      text = Files.readString(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new InputException(where + ": cannot read (" + e.getClass().getSimpleName() + ")");
    }
    FileForm form;
    try {
      form = new Gson().fromJson(text, FileForm.class);
    } catch (JsonParseException e) {
      throw new InputException(where + ": invalid JSON: " + e.getMessage());
    }
    if (form == null || form.tokens == null || form.tokens.isEmpty()) {
      throw new InputException(where + ": no \"tokens\" (a list of {\"name\", \"roles\", \"sha256\"})");
    }
    List<Entry> entries = new ArrayList<>();
    Set<String> names = new HashSet<>();
    Set<String> digests = new HashSet<>();
    for (int i = 0; i < form.tokens.size(); i++) {
      EntryForm e = form.tokens.get(i);
      String at = where + ": tokens[" + i + "]";
      if (e == null || e.name == null || e.name.isBlank()) {
        throw new InputException(at + ": no name");
      }
      if (!names.add(e.name)) {
        throw new InputException(at + ": name '" + e.name + "' appears twice (a session belongs to a name)");
      }
      if (e.sha256 == null || !e.sha256.matches("[0-9a-fA-F]{64}")) {
        throw new InputException(at + " (" + e.name + "): sha256 must be 64 hex digits (sha256sum of the token)");
      }
      if (!digests.add(e.sha256.toLowerCase(java.util.Locale.ROOT))) {
        throw new InputException(at + " (" + e.name + "): the same sha256 as another token");
      }
      if (e.roles == null || e.roles.isEmpty()) {
        throw new InputException(at + " (" + e.name + "): no roles (search, sessions, admin)");
      }
      Set<Role> roles = EnumSet.noneOf(Role.class);
      for (String r : e.roles) {
        Role role = Role.of(r);
        if (role == null) {
          throw new InputException(at + " (" + e.name + "): unknown role '" + r + "' (search, sessions, admin)");
        }
        roles.add(role);
      }
      entries.add(new Entry(new Caller(e.name, roles), HexFormat.of().parseHex(e.sha256)));
    }
    return new TokenStore(entries);
  }

  /** The caller a token belongs to, if any. Every entry is compared, in constant time. */
  public Optional<Caller> find(String token) {
    byte[] digest = sha256(token);
    Caller found = null;
    for (Entry e : entries) {
      if (MessageDigest.isEqual(e.sha256(), digest)) {
        found = e.caller();
      }
    }
    return Optional.ofNullable(found);
  }

  /** How many tokens the node accepts. */
  public int size() {
    return entries.size();
  }

  /** The hex SHA-256 of a token, as a tokens file holds it. */
  public static String sha256Hex(String token) {
    return HexFormat.of().formatHex(sha256(token));
  }

  private static byte[] sha256(String token) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
  }
}
