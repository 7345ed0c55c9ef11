package io.longmem.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code bin/longmem}: one launcher, a subcommand per job. */
@Command(name = "longmem", mixinStandardHelpOptions = true, version = "longmem 0.1.0",
    description = "LongLLaMA with memory that outgrows one process.",
    subcommands = {TokenizeCommand.class, LogitsCommand.class, GenerateCommand.class, SummarizeCommand.class,
        PasskeyCommand.class, ServeCommand.class,
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

  /**
   * The Spark jobs (encode, ...) live in the jobs module, which depends on this one; its commands
   * join when it is on the classpath (bin/longmem runs from it).
   */
  private static void addJobs(CommandLine cli) {
    try {
      Class.forName("io.longmem.jobs.JobsCommands").getMethod("register", CommandLine.class).invoke(null, cli);
    } catch (ClassNotFoundException e) {
      // model-worker alone: no Spark jobs
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("cannot register the jobs module's commands", e);
    }
  }

  /** Runs the CLI and returns its exit code; user errors print one line, not a stack trace. */
  public static int run(String... args) {
    CommandLine cli = new CommandLine(new Main());
    addJobs(cli);
    cli.setExecutionExceptionHandler((e, cmd, parsed) -> {
      if (e instanceof IllegalArgumentException || e instanceof java.io.IOException
          || e instanceof io.longmem.retrieve.ServiceMemory.MemoryUnavailableException) {
        String msg = e instanceof java.nio.file.NoSuchFileException ? "no such file: " + e.getMessage() : e.getMessage();
        cmd.getErr().println("longmem " + cmd.getCommandName() + ": " + msg);
        return 2;
      }
      throw e;
    });
    return cli.execute(args);
  }
}
