package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The output directory's life: a run records its plan in {@code job.json} first; tasks finish
 * shards into {@code shards/} one by one; the driver writes {@code manifest.json} last. A directory
 * with a plan and no manifest is an unfinished run: it is refused unless the run resumes it, and
 * only a run of the same plan may resume it (shards already finished are kept, not redone). Once
 * the manifest is committed, {@code job.json} gains the run's {@code result} (its final counts).
 */
final class EncodeOutput {
  static final String PLAN = "job.json";
  private static final Gson GSON = new GsonBuilder().setPrettyPrinting().create();

  private EncodeOutput() {}

  /** Checks the directory and records the plan; returns how many shards an earlier run finished. */
  static int prepare(Path out, EncodeSpec.Plan plan, boolean resume) throws IOException {
    if (Files.exists(out.resolve(Manifest.FILE))) {
      throw new InputException("output " + out + " already holds a committed collection; "
          + "choose another directory or delete it first");
    }
    Path planFile = out.resolve(PLAN);
    if (Files.exists(planFile)) {
      EncodeSpec.Plan earlier = GSON.fromJson(Files.readString(planFile, StandardCharsets.UTF_8), EncodeSpec.Plan.class);
      List<String> finished = CollectionWriter.finishedShardIds(out);
      if (!resume) {
        throw new InputException("output " + out + " holds an unfinished encode (" + finished.size() + " of "
            + earlier.shards() + " shards finished, no manifest): rerun with --resume to finish it, "
            + "or delete the directory to start over");
      }
      if (!plan.equals(earlier)) {
        throw new InputException("output " + out + " holds an unfinished encode of another plan: "
            + differences(earlier, plan) + "; resume with the same model, input and options, or delete the directory");
      }
      return finished.size();
    }
    if (Files.isDirectory(out)) {
      try (var entries = Files.list(out)) {
        if (entries.findAny().isPresent()) {
          throw new InputException("output " + out + " is not empty and holds no longmem encode: "
              + "choose an empty or new directory");
        }
      }
    }
    Files.createDirectories(out);
    String json = GSON.toJson(plan);
    io.longmem.io.AtomicFiles.write(planFile, tmp -> Files.writeString(tmp, json, StandardCharsets.UTF_8));
    return 0;
  }

  /**
   * Adds what the run did to {@code job.json} (once the manifest is committed), as its {@code
   * result}: an operator reads there how many documents and tokens went in, what was skipped and
   * why, and when it finished. The plan's fields stay as they were (a resume compares only them).
   */
  static void recordResult(Path out, EncodeJob.Report r) throws IOException {
    Path planFile = out.resolve(PLAN);
    JsonObject job = JsonParser.parseString(Files.readString(planFile, StandardCharsets.UTF_8)).getAsJsonObject();
    ShardEncoder.Counts c = r.counts();
    JsonObject skipped = new JsonObject();
    skipped.addProperty("empty", c.empty());
    skipped.addProperty("duplicate", c.duplicates());
    skipped.addProperty("noId", c.missingId());
    skipped.addProperty("malformed", c.malformed());
    skipped.addProperty("outOfVocabulary", c.rejected());
    skipped.addProperty("undecodableIds", c.badId());
    JsonObject result = new JsonObject();
    result.addProperty("documents", c.documents());
    result.addProperty("tokens", c.tokens());
    result.add("skipped", skipped);
    result.addProperty("undecodableBytes", c.badUtf8()); // encoded, their bad bytes read as U+FFFD
    result.addProperty("shards", r.shards());
    result.addProperty("resumedShards", r.resumedShards());
    result.addProperty("seconds", Math.round(r.seconds() * 1000) / 1000.0);
    result.addProperty("finishedAt", java.time.Instant.now().toString());
    job.add("result", result);
    String json = GSON.toJson(job);
    io.longmem.io.AtomicFiles.write(planFile, tmp -> Files.writeString(tmp, json, StandardCharsets.UTF_8));
  }

  private static String differences(EncodeSpec.Plan a, EncodeSpec.Plan b) {
    StringBuilder s = new StringBuilder();
    for (var c : EncodeSpec.Plan.class.getRecordComponents()) {
      try {
        Object x = c.getAccessor().invoke(a);
        Object y = c.getAccessor().invoke(b);
        if (!java.util.Objects.equals(x, y)) {
          s.append(s.length() == 0 ? "" : ", ").append(c.getName()).append(" was ").append(x).append(", now ").append(y);
        }
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException(e);
      }
    }
    return s.toString();
  }
}
