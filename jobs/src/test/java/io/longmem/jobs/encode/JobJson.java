package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.charset.StandardCharsets;

/** Tests compare collections file by file; job.json's result alone says when and how long a run took. */
public final class JobJson {
  private JobJson() {}

  /** {@code bytes} of the file {@code name}; for job.json without its result's times (which must be there). */
  public static byte[] withoutTimes(String name, byte[] bytes) {
    if (!name.equals(EncodeOutput.PLAN)) {
      return bytes;
    }
    JsonObject job = JsonParser.parseString(new String(bytes, StandardCharsets.UTF_8)).getAsJsonObject();
    assertTrue(job.has("result"), "job.json has no result");
    job.getAsJsonObject("result").remove("seconds");
    job.getAsJsonObject("result").remove("finishedAt");
    return job.toString().getBytes(StandardCharsets.UTF_8);
  }
}
