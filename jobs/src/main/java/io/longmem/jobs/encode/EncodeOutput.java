package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import io.longmem.memory.shard.Manifest;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * The output directory's life: a run records its plan in {@code job.json} first; tasks finish
 * shards into {@code shards/} one by one; the driver writes {@code manifest.json} last. A directory
 * with a plan and no manifest is an unfinished run: it is refused unless the run resumes it, and
 * only a run of the same plan may resume it (shards already finished are kept, not redone).
 */
final class EncodeOutput {
  static final String PLAN = "job.json";
  private static final Gson GSON = new GsonBuilder().setPrettyPrinting().create();

  private EncodeOutput() {}

  /** Checks the directory and records the plan; returns how many shards an earlier run finished. */
  static int prepare(Path out, EncodeSpec.Plan plan, boolean resume) throws IOException {
    return prepare(OutputDir.local(out), plan, resume);
  }

  /** The same for any output directory (local or on a Hadoop filesystem). */
  static int prepare(OutputDir out, EncodeSpec.Plan plan, boolean resume) throws IOException {
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
      return finished.size();
    }
    if (out.nonEmpty()) {
      throw new InputException("output " + out.describe() + " is not empty and holds no longmem encode: "
          + "choose an empty or new directory");
    }
    out.create();
    out.writeWhole(PLAN, GSON.toJson(plan));
    return 0;
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
