package io.longmem.memory.service;

import io.longmem.memory.api.ClientSecurity;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.api.MemoryRequestException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.UUID;

/**
 * {@code --memory local}: a memory node inside the calling process over collection directories
 * (FAISS in process), behind an ordinary {@link MemoryEndpoint}, so the worker talks to it with the
 * same client code it uses for a remote service. The command line and the jobs wire it; the model
 * worker never sees the server.
 */
public final class InProcessNode {
  private InProcessNode() {}

  /** Starts a node serving these collections (name -> directory); closing the endpoint stops it. */
  public static MemoryEndpoint open(Map<String, Path> collections, String modelFingerprint) throws IOException {
    ServiceConfig c = new ServiceConfig();
    collections.forEach((name, dir) -> c.collections.put(name, dir.toAbsolutePath().toString()));
    c.expectedFingerprint = modelFingerprint;
    c.maxMessageMb = MemoryEndpoint.MAX_MESSAGE_BYTES >> 20;
    String name = "longmem-worker-" + UUID.randomUUID();
    MemoryServer server = MemoryServer.startInProcess(c, name);
    if (!server.node().refused().isEmpty()) {
      String why = server.node().refused().toString();
      server.close();
      throw new MemoryRequestException("cannot load collection(s): " + why);
    }
    return MemoryEndpoint.inProcess(name, "in-process memory over " + collections.keySet(), server);
  }

  /** {@code grpc://HOST:PORT}, or {@code local} (then {@code collections} are directories). */
  public static MemoryEndpoint open(String memory, Map<String, Path> collections, String modelFingerprint)
      throws IOException {
    return open(memory, collections, modelFingerprint, ClientSecurity.NONE);
  }

  /** As {@link #open(String, Map, String)}; a remote service is reached with {@code security}. */
  public static MemoryEndpoint open(String memory, Map<String, Path> collections, String modelFingerprint,
      ClientSecurity security) throws IOException {
    return "local".equals(memory) ? open(collections, modelFingerprint) : MemoryEndpoint.remote(memory, security);
  }
}
