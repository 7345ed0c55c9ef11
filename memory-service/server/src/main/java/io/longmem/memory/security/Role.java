package io.longmem.memory.security;

import java.util.Locale;

/** What a token may do; each Memory method needs one (see {@link MethodRoles}). */
public enum Role {
  /** read the collections: Search, ListCollections */
  SEARCH,
  /** hold memory on the node: CreateSession, AppendSession, DropSession */
  SESSIONS,
  /** node-to-node and administrative calls: SearchShards */
  ADMIN;

  /** The role's name in a tokens file and in messages. */
  public String key() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** The role of a tokens file's name, or null. */
  static Role of(String key) {
    for (Role r : values()) {
      if (r.key().equals(key)) {
        return r;
      }
    }
    return null;
  }
}
