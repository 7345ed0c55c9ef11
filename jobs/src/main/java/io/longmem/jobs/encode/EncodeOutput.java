package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.longmem.memory.shard.CollectionWriter;
import io.longmem.memory.shard.Manifest;
import java.io.IOException;
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

  /**
   * Checks the output directory (local or on a Hadoop filesystem) and records the plan; returns the
   * ids of the shards an earlier run finished (empty for a new run).
   */
  static java.util.Set<String> prepare(OutputDir out, EncodeSpec.Plan plan, boolean resume) throws IOException {
    if (out.exists(Manifest.FILE)) {
      throw new InputException("output " + out.describe() + " already holds a committed collection; "
          + "choose another directory or delete it first");
    }
    if (out.exists(PLAN)) {
      EncodeSpec.Plan earlier = GSON.fromJson(out.read(PLAN), EncodeSpec.Plan.class);
      List<String> finished = out.finishedShardIds();
      if (!resume) {
        throw new InputException("output " + out.describe() + " holds an unfinished encode (" + finished.size() + " of "
            + earlier.shards() + " shards finished, no manifest): rerun with --resume to finish it, "
            + "or delete the directory to start over");
      }
      if (!plan.equals(earlier)) {
        throw new InputException("output " + out.describe() + " holds an unfinished encode of another plan: "
            + differences(earlier, plan) + "; resume with the same model, input and options, or delete the directory");
      }
      return java.util.Set.copyOf(finished);
    }
    if (out.nonEmpty()) {
      throw new InputException("output " + out.describe() + " is not empty and holds no longmem encode: "
          + "choose an empty or new directory");
    }
    out.create();
    out.writeWhole(PLAN, GSON.toJson(plan));
    return java.util.Set.of();
  }

  /**
   * Adds what the run did to {@code job.json} (once the manifest is committed), as its {@code
   * result}: an operator reads there how many documents and tokens went in, what was skipped and
   * why, and when it finished. The plan's fields stay as they were (a resume compares only them).
   */
  static void recordResult(OutputDir out, EncodeJob.Report r) throws IOException {
    JsonObject job = JsonParser.parseString(out.read(PLAN)).getAsJsonObject();
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
    out.writeWhole(PLAN, GSON.toJson(job));
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
