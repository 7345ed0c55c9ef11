package io.longmem.cli;

import io.longmem.memory.shard.CollectionExport;
import io.longmem.memory.shard.MemoryCollection;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "shards", mixinStandardHelpOptions = true, description = "Inspect memory collections.",
    subcommands = {ShardsCommand.Export.class})
final class ShardsCommand implements Runnable {
  @Override
  public void run() {
    new picocli.CommandLine(this).usage(System.out);
  }

  @Command(name = "export", mixinStandardHelpOptions = true,
      description = "Write one layer's keys and values as float32 .npy [heads, tokens, head_dim], "
          + "positions.npy and documents.json.")
  static final class Export implements Callable<Integer> {
    @Option(names = "--collection", required = true, paramLabel = "DIR") Path collection;
    @Option(names = "--layer", required = true, paramLabel = "L") int layer;
    @Option(names = "--out", required = true, paramLabel = "DIR") Path out;

    @Override
    public Integer call() throws Exception {
      try (MemoryCollection c = MemoryCollection.open(collection, null, true, true)) {
        long tokens = CollectionExport.export(c, layer, out);
        System.err.println("exported layer " + layer + ": " + tokens + " tokens x " + c.layout().heads()
            + " heads x " + c.layout().headDim() + " to " + out);
      }
      return 0;
    }
  }
}
