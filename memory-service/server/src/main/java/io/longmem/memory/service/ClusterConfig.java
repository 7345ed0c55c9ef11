package io.longmem.memory.service;

import io.longmem.io.InputException;
import com.google.gson.FieldNamingPolicy;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The cluster file: which node serves which shards. A shard listed under several nodes is
 * replicated; any node coordinates a search, sending each remote shard to its first live replica.
 *
 * <pre>{"replication": 2, "nodes": [
 *   {"id": "a", "address": "127.0.0.1:7071", "shards": {"books": ["shard-0", "shard-1"]}},
 *   {"id": "b", "address": "127.0.0.1:7072", "shards": {"books": ["shard-1", "shard-0"]}}]}</pre>
 */
public final class ClusterConfig {
  private static final Gson GSON = new GsonBuilder()
      .setFieldNamingPolicy(FieldNamingPolicy.LOWER_CASE_WITH_UNDERSCORES).create();

  public int replication = 1;
  public List<Node> nodes = new ArrayList<>();

  /** One node: its id, host:port, and its shards per collection. */
  public static final class Node {
    public String id;
    public String address;
    public Map<String, List<String>> shards = Map.of();
  }

  public static ClusterConfig load(Path file) throws IOException {
    ClusterConfig c;
    try {
      c = GSON.fromJson(Files.readString(file, StandardCharsets.UTF_8), ClusterConfig.class);
    } catch (JsonParseException e) {
      throw new InputException(file + ": invalid JSON: " + e.getMessage());
    }
    if (c == null || c.nodes == null || c.nodes.isEmpty()) {
      throw new InputException(file + ": no nodes");
    }
    java.util.Set<String> ids = new java.util.HashSet<>();
    for (Node n : c.nodes) {
      if (n.id == null || n.address == null || !ids.add(n.id)) {
        throw new InputException(file + ": every node needs a unique id and an address");
      }
      if (n.shards == null) {
        n.shards = Map.of();
      }
    }
    return c;
  }

  public Node node(String id) {
    for (Node n : nodes) {
      if (n.id.equals(id)) {
        return n;
      }
    }
    return null;
  }

  /** Nodes holding a shard, in file order. */
  public List<Node> replicas(String collection, String shard) {
    List<Node> out = new ArrayList<>();
    for (Node n : nodes) {
      if (n.shards.getOrDefault(collection, List.of()).contains(shard)) {
        out.add(n);
      }
    }
    return out;
  }
}
