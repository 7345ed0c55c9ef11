package io.longmem.memory.service;

import java.nio.file.Path;

/**
 * A memory node as its own process, for {@link NetnsClusterTest}: {@code NetnsNode CONFIG.json}
 * serves until killed (SIGTERM closes it as {@code bin/longmem serve} does) and prints READY once
 * it serves.
 */
public final class NetnsNode {
  private NetnsNode() {}

  public static void main(String[] args) throws Exception {
    MemoryServer s = MemoryServer.start(ServiceConfig.load(Path.of(args[0])));
    Runtime.getRuntime().addShutdownHook(new Thread(s::close, "close"));
    System.out.println("READY " + s.port());
    System.out.flush();
    s.awaitTermination();
  }
}
