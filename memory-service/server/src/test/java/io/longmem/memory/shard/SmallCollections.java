package io.longmem.memory.shard;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.io.FileTrees;
import io.longmem.memory.api.MemoryBlock;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;

/**
 * Small real collections written by the real writers, and the ways tests damage copies of them:
 * the manifest edited as JSON, a file rewritten and (as an attacker would) recorded again in the
 * manifest with its new size and SHA-256 so that only the new checks stand in the way.
 */
public final class SmallCollections {
  public static final ShardLayout LAYOUT = new ShardLayout(List.of(1), 2, 8, MemoryBlock.Storage.FLOAT32);
  public static final String MODEL = "sha256:small";

  private SmallCollections() {}

  /** Two shards ("shard-0": documents a, b; "shard-1": c) of {@code tokens} tokens per document. */
  public static Path write(Path dir, String factory, int tokens) throws IOException {
    Random r = new Random(7);
    String[][] shards = {{"a", "b"}, {"c"}};
    try (CollectionWriter w = CollectionWriter.create(dir, MODEL, LAYOUT, "float32", factory).trainingRows(tokens)) {
      List<Manifest.ShardEntry> entries = new ArrayList<>();
      for (int s = 0; s < shards.length; s++) {
        try (ShardWriter sw = w.newShard("shard-" + s)) {
          for (String doc : shards[s]) {
            int[] pos = new int[tokens];
            float[][] k = new float[1][tokens * LAYOUT.width()];
            float[][] v = new float[1][tokens * LAYOUT.width()];
            for (int i = 0; i < tokens; i++) {
              pos[i] = i;
            }
            for (int i = 0; i < k[0].length; i++) {
              k[0][i] = (float) r.nextGaussian();
              v[0][i] = (float) r.nextGaussian();
            }
            TokenMajor.append(sw, doc, pos, k, v);
          }
          entries.add(sw.finish());
        }
      }
      w.commit(entries);
    }
    return dir;
  }

  /** Edits manifest.json as JSON. */
  public static void editManifest(Path dir, Consumer<JsonObject> edit) throws IOException {
    Path file = dir.resolve(Manifest.FILE);
    JsonObject m = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
    edit.accept(m);
    Files.writeString(file, new GsonBuilder().setPrettyPrinting().create().toJson(m), StandardCharsets.UTF_8);
  }

  /** The JSON of shard {@code s} in a manifest. */
  public static JsonObject shard(JsonObject manifest, int s) {
    return manifest.getAsJsonArray("shards").get(s).getAsJsonObject();
  }

  /** Records a file's current size and SHA-256 in the manifest, as if it had been written so. */
  public static void rerecord(Path dir, String relative) throws IOException {
    Path p = dir.resolve(relative);
    long bytes = Files.size(p);
    String sha = FileTrees.sha256(p);
    editManifest(dir, m -> m.getAsJsonArray("shards").forEach(s -> s.getAsJsonObject().getAsJsonArray("files")
        .forEach(f -> {
          JsonObject o = f.getAsJsonObject();
          if (o.get("path").getAsString().equals(relative)) {
            o.addProperty("bytes", bytes);
            o.addProperty("sha256", sha);
          }
        })));
  }
}
