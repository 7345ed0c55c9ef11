package io.longmem.jobs;

import io.longmem.jobs.encode.EncodeJob;
import picocli.CommandLine;

/** Adds the Spark jobs to bin/longmem's command line (called by io.longmem.cli.Main). */
public final class JobsCommands {
  private JobsCommands() {}

  public static void register(CommandLine cli) {
    cli.addSubcommand("encode", new EncodeJob());
    cli.addSubcommand("summarize-corpus", new io.longmem.jobs.summarize.SummarizeJob());
    cli.addSubcommand("demo", new io.longmem.jobs.demo.DemoCommand());
    CommandLine bench = cli.getSubcommands().get("bench");
    if (bench != null) {
      bench.addSubcommand("encode", new io.longmem.jobs.bench.EncodeBench());
    }
  }
}
