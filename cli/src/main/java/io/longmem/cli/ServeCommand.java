package io.longmem.cli;

import io.longmem.io.InputException;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import sun.misc.Signal;
import picocli.CommandLine.Option;

@Command(name = "serve", mixinStandardHelpOptions = true,
    description = "Run a memory node: the gRPC Memory service over collections (binds 127.0.0.1 by default).")
final class ServeCommand implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(ServeCommand.class);
  @Option(names = "--conf", paramLabel = "FILE", description = "node configuration (default: conf/memory-service.json)")
  Path conf;

  @Option(names = "--collection", paramLabel = "NAME=DIR|URI",
      description = "serve a collection: a directory or a Hadoop URI (hdfs://..., copied into cache_dir first); "
          + "repeatable, adds to the conf")
  List<String> collections = List.of();

  @Option(names = "--port", description = "override the configured port (0: any free port)")
  Integer port;

  @Option(names = "--bind", description = "override the configured address (other than loopback: the conf needs tls and auth)")
  String bind;

  @Override
  public Integer call() throws Exception {
    Path file = conf != null ? conf : defaultConf();
    ServiceConfig config = ServiceConfig.load(file);
    Map<String, String> all = new LinkedHashMap<>(config.collections);
    for (String c : collections) {
      int eq = c.indexOf('=');
      if (eq <= 0) {
        throw new InputException("--collection takes NAME=DIR, got " + c);
      }
      String where = c.substring(eq + 1);
      all.put(c.substring(0, eq), io.longmem.memory.fs.Locations.isRemote(where) || io.longmem.memory.fs.Locations
          .isFileUri(where) ? where : Path.of(where).toAbsolutePath().toString());
    }
    config.collections = all;
    if (port != null) {
      config.port = port;
    }
    if (bind != null) {
      config.bind = bind;
    }
    try (MemoryServer server = MemoryServer.start(config)) {
      System.err.println("memory node " + config.nodeId + " listening on " + config.bind + ":" + server.port()
          + " with collections " + server.node().collections().keySet()
          + (server.node().refused().isEmpty() ? "" : ", refused " + server.node().refused().keySet()));
      onSignals(server, config.shutdownGraceMs);
      server.awaitTermination();
    }
    LOG.info("memory node {} stopped", config.nodeId);
    return 0;
  }

  /**
   * SIGTERM and SIGINT drain the node (see {@link MemoryServer#close}) instead of ending the JVM at
   * once: the handler replaces the JVM's, so the command returns and exits 0 once the node stopped.
   */
  private static void onSignals(MemoryServer server, long graceMs) {
    for (String name : new String[] {"TERM", "INT"}) {
      try {
        Signal.handle(new Signal(name), sig -> {
          LOG.info("SIG{}: draining the node", sig.getName());
          Thread t = new Thread(server::close, "memory-node-shutdown");
          t.start();
        });
      } catch (IllegalArgumentException e) { // the JVM keeps this signal (-Xrs): it ends the process as it would
        LOG.warn("SIG{} cannot be handled here ({}): it stops the node without draining", name, e.getMessage());
      }
    }
  }

  private static Path defaultConf() {
    String home = System.getProperty("longmem.home");
    Path p = home != null ? Path.of(home, "conf", "memory-service.json") : Path.of("conf", "memory-service.json");
    if (!Files.exists(p)) {
      throw new InputException("no --conf given and no default at " + p.toAbsolutePath());
    }
    return p;
  }
}
