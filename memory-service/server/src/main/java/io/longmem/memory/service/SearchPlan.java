package io.longmem.memory.service;

import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MemoryCollection;
import io.longmem.memory.shard.ShardLayout;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * What a search covers, decided before anything is searched: per collection the shards to search
 * with their row ranges where documents are named, split into this node's (searched here) and the
 * others' (sent to a replica), and the sessions. Every check that needs no search (collections,
 * layers, shapes, documents, sessions) is made here, so a bad request is refused before any work.
 *
 * @param local this node's shards to search
 * @param remote collection -> ids of the shards it does not hold, in manifest order
 * @param sessions the sessions named, checked against the query
 */
record SearchPlan(List<LocalShards.Task> local, Map<String, List<String>> remote, List<Session> sessions) {

  /** A coordinator's plan: every shard of the query's collections, and its sessions. */
  static SearchPlan of(SearchQuery q, Function<String, MemoryCollection> collections,
      Function<String, Session> sessions) {
    List<LocalShards.Task> local = new ArrayList<>();
    Map<String, List<String>> remote = new LinkedHashMap<>();
    for (Map.Entry<String, Map<String, long[]>> c : ranges(q, collections).entrySet()) {
      MemoryCollection col = collections.apply(c.getKey());
      for (Map.Entry<String, long[]> s : c.getValue().entrySet()) {
        MemoryCollection.Shard shard = col.shard(s.getKey());
        if (shard != null) {
          local.add(new LocalShards.Task(shard, col.layout(), s.getValue()));
        } else {
          remote.computeIfAbsent(c.getKey(), x -> new ArrayList<>()).add(s.getKey());
        }
      }
    }
    List<Session> named = new ArrayList<>();
    for (String id : q.sessions()) {
      Session s = sessions.apply(id);
      checkSession(s, q);
      named.add(s);
    }
    return new SearchPlan(local, remote, named);
  }

  /** A replica's plan: some of this node's shards of one collection, which a coordinator asked for. */
  static SearchPlan ofShards(String collection, List<String> shards, SearchQuery q,
      Function<String, MemoryCollection> collections, String nodeId) {
    MemoryCollection col = collections.apply(collection);
    checkLayout(collection, col.layout(), q);
    RequestLimits.checkIndex(collection, col.manifest().indexFactory(), q);
    Map<String, long[]> ranges = ranges(q, collections).getOrDefault(collection, Map.of());
    List<LocalShards.Task> local = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    for (String id : shards) {
      if (!seen.add(id)) {
        throw RequestException.invalid("shards: " + Shown.name(id) + " is named twice");
      }
      MemoryCollection.Shard shard = col.shard(id);
      if (shard == null) {
        throw new RequestException(RequestException.Kind.UNAVAILABLE, "node " + nodeId + " does not serve "
            + Shown.name(collection) + "/" + Shown.name(id));
      }
      if (!q.documents().isEmpty() && !ranges.containsKey(id)) {
        continue;
      }
      local.add(new LocalShards.Task(shard, col.layout(), ranges.get(id)));
    }
    return new SearchPlan(local, Map.of(), List.of());
  }

  /**
   * Which shards of which collections to search, with each shard's row ranges when documents are
   * named (null: the whole shard). Checks collections, layer, shapes and documents.
   */
  static Map<String, Map<String, long[]>> ranges(SearchQuery q, Function<String, MemoryCollection> collections) {
    Map<String, Map<String, long[]>> plan = new LinkedHashMap<>();
    Set<String> wanted = new HashSet<>(q.documents());
    Set<String> found = new HashSet<>();
    for (String name : q.collections()) {
      MemoryCollection col = collections.apply(name);
      checkLayout(name, col.layout(), q);
      RequestLimits.checkIndex(name, col.manifest().indexFactory(), q);
      Map<String, long[]> shards = new LinkedHashMap<>();
      for (Manifest.ShardEntry s : col.manifest().shards()) {
        if (wanted.isEmpty()) {
          shards.put(s.id(), null);
          continue;
        }
        List<Long> bounds = new ArrayList<>();
        for (Manifest.DocumentEntry d : s.documents()) {
          if (wanted.contains(d.id())) {
            found.add(d.id());
            bounds.add(d.begin());
            bounds.add(d.end());
          }
        }
        if (!bounds.isEmpty()) {
          shards.put(s.id(), bounds.stream().mapToLong(Long::longValue).toArray());
        }
      }
      plan.put(name, shards);
    }
    if (!wanted.isEmpty()) {
      wanted.removeAll(found);
      if (!wanted.isEmpty() && !q.collections().isEmpty()) {
        throw RequestException.notFound("documents " + Shown.names(new java.util.TreeSet<>(wanted))
            + " are in none of the collections " + Shown.names(q.collections()));
      }
    }
    return plan;
  }

  static void checkLayout(String name, ShardLayout layout, SearchQuery q) {
    if (!layout.layers().contains(q.layer())) {
      throw RequestException.invalid("layer " + q.layer() + " is not a memory layer of collection " + name
          + " (layers " + layout.layers() + ")");
    }
    if (q.heads() != layout.heads()) {
      throw RequestException.invalid("heads: " + q.heads() + ", collection " + name + " has " + layout.heads());
    }
    if (q.headDim() != layout.headDim()) {
      throw RequestException.invalid("head_dim: " + q.headDim() + ", collection " + name + " has " + layout.headDim());
    }
  }

  static void checkSession(Session s, SearchQuery q) {
    if (!s.hasLayer(q.layer())) {
      throw RequestException.invalid("layer " + q.layer() + " is not a layer of session " + s.id());
    }
    if (q.heads() != s.heads() || q.headDim() != s.headDim()) {
      throw RequestException.invalid("heads/head_dim: " + q.heads() + "/" + q.headDim() + ", session " + s.id()
          + " has " + s.heads() + "/" + s.headDim());
    }
  }
}
