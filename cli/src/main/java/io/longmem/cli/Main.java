package io.longmem.cli;

import io.longmem.jobs.encode.EncodeJob;
import io.longmem.jobs.summarize.SummarizeJob;
import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryUnavailableException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code bin/longmem}: one launcher, a subcommand per job. */
@Command(name = "longmem", mixinStandardHelpOptions = true, version = "longmem 0.1.0",
    description = "LongLLaMA with memory that outgrows one process.",
    subcommands = {TokenizeCommand.class, LogitsCommand.class, GenerateCommand.class, SummarizeCommand.class,
        PasskeyCommand.class, TrainCommand.class, ServeCommand.class,
        ShardsCommand.class,
        BenchCommand.class})
public final class Main implements Runnable {
  @CommandLine.Spec
  CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** The Spark jobs, on an embedded Spark here (the same classes spark-submit runs). */
  private static void addJobs(CommandLine cli) {
    cli.addSubcommand("encode", new EncodeJob());
    cli.addSubcommand("summarize-corpus", new SummarizeJob());
    cli.addSubcommand("demo", new DemoCommand());
    cli.getSubcommands().get("bench").addSubcommand("encode", new io.longmem.bench.EncodeBench());
    cli.getSubcommands().get("bench").addSubcommand("long", new io.longmem.bench.LongBench());
  }

  /** Runs the CLI and returns its exit code; user errors print one line, not a stack trace. */
  public static int run(String... args) {
    CommandLine cli = new CommandLine(new Main());
    addJobs(cli);
    cli.setExecutionExceptionHandler((e, cmd, parsed) -> {
      // the user's input (InputException: options, files, checkpoints, requests the service refused)
      // or the world (I/O, an unreachable memory service): one line. Anything else is a bug.
      if (e instanceof InputException || e instanceof java.io.IOException || e instanceof MemoryUnavailableException) {
        String msg = e instanceof java.nio.file.NoSuchFileException ? "no such file: " + e.getMessage() : e.getMessage();
        cmd.getErr().println("longmem " + cmd.getCommandName() + ": " + msg);
        return 2;
      }
      throw e;
    });
    return cli.execute(args);
  }
}
