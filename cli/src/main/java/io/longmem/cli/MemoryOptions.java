package io.longmem.cli;

import io.longmem.io.InputException;
import io.longmem.memory.service.InProcessNode;
import io.longmem.model.LongLlama;
import io.longmem.model.memory.ReadMemory;
import io.longmem.model.memory.Memory;
import io.longmem.memory.api.BearerToken;
import io.longmem.memory.api.ClientSecurity;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.retrieve.ServiceMemory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Option;

/** Where the memory layers' memory lives, for the commands that run the model. */
final class MemoryOptions {
  @Option(names = "--memory", defaultValue = "dense", paramLabel = "dense|local|grpc[s]://HOST:PORT",
      description = "dense: in this process, every pair (the reference); local: kNN over --collection directories "
          + "with FAISS in this process; grpc://HOST:PORT: kNN through a memory service (grpcs://: over TLS). "
          + "Default: ${DEFAULT-VALUE}")
  String memory;

  @Option(names = "--memory-token-file", paramLabel = "FILE",
      description = "bearer token for the memory service (a file holding it; the service needs search and sessions)")
  Path tokenFile;

  @Option(names = "--memory-tls-ca", paramLabel = "PEM", description = "CA that signed the service's certificate "
      + "(grpcs://; default: the JVM's roots)")
  Path tlsCa;

  @Option(names = "--memory-tls-cert", paramLabel = "PEM", description = "client certificate, for a service that "
      + "wants mutual TLS (with --memory-tls-key)")
  Path tlsCert;

  @Option(names = "--memory-tls-key", paramLabel = "PEM", description = "the client certificate's key (PKCS#8)")
  Path tlsKey;

  @Option(names = "--read-memory", defaultValue = "dense", paramLabel = "dense|knn[:K]",
      description = "with --memory dense, what the memory layers attend to: dense (every pair read before, the "
          + "reference; quadratic in the input's length) or knn (the top-K pairs per head and query from an index "
          + "in this process: linear). Default: ${DEFAULT-VALUE}")
  String readMemory;

  @Option(names = "--read-k", defaultValue = "" + ReadMemory.DEFAULT_K, paramLabel = "K",
      description = "K of --read-memory knn (default: ${DEFAULT-VALUE})")
  int readK;

  @Option(names = "--collection", paramLabel = "C", description = "collection searched (repeatable): its name on the "
      + "service, or with --memory local its directory (or NAME=DIR)")
  List<String> collections = new ArrayList<>();

  @Option(names = "--document", paramLabel = "D", description = "restrict the collections to this document (repeatable)")
  List<String> documents = new ArrayList<>();

  @Option(names = "--memory-top-k", defaultValue = "128", paramLabel = "K",
      description = "kNN memory: pairs per head and query (default: ${DEFAULT-VALUE})")
  int topK;

  @Option(names = "--nprobe", defaultValue = "0", description = "IVF lists probed (0: the index's default)")
  int nprobe;

  @Option(names = "--refine", defaultValue = "0",
      description = "candidates re-scored exactly per wanted pair on approximate indexes (0: the service's default)")
  int refine;

  @Option(names = "--memory-deadline-ms", defaultValue = "30000", description = "deadline of each memory call")
  long deadlineMs;

  @Option(names = "--memory-attempts", defaultValue = "3", description = "tries per memory call before the request fails")
  int attempts;

  /** A memory per request; AutoCloseable for the connection or in-process node behind it. */
  interface Backend extends AutoCloseable {
    Memory newMemory(LongLlama model, int batch);

    String describe();

    @Override
    void close();
  }

  /** The TLS files and token given for a remote memory service. */
  ClientSecurity security() {
    boolean any = tokenFile != null || tlsCa != null || tlsCert != null || tlsKey != null;
    if (any && !memory.startsWith("grpc")) {
      throw new InputException("--memory-token-file and --memory-tls-* are for --memory grpc(s)://HOST:PORT");
    }
    return new ClientSecurity(tlsCa, tlsCert, tlsKey,
        tokenFile == null ? null : BearerToken.read(tokenFile, "--memory-token-file"),
        new String[] {"--memory-tls-ca", "--memory-tls-cert", "--memory-tls-key"});
  }

  Backend open(String modelFingerprint) throws IOException {
    ReadMemory read = ReadMemory.parse(readMemory, readK);
    if ("dense".equals(memory)) {
      if (!collections.isEmpty() || !documents.isEmpty()) {
        throw new InputException("--collection/--document need --memory local or grpc://HOST:PORT");
      }
      return new Backend() {
        @Override
        public Memory newMemory(LongLlama model, int batch) {
          var c = model.config();
          return read.create(model.manager(), batch, c.numHeads(), c.headDim());
        }

        @Override
        public String describe() {
          return read.kind() == ReadMemory.Kind.DENSE ? "dense memory in process"
              : "top-" + read.k() + " kNN memory in process (" + read + ")";
        }

        @Override
        public void close() {}
      };
    }
    if (read.kind() != ReadMemory.Kind.DENSE) {
      throw new InputException("--read-memory " + read + " is for in-process memory (--memory dense); with --memory "
          + memory + " memory layers already attend to the top --memory-top-k pairs");
    }
    List<String> names = new ArrayList<>();
    Map<String, Path> dirs = new LinkedHashMap<>();
    for (String c : collections) {
      if ("local".equals(memory)) {
        int eq = c.indexOf('=');
        String name = eq > 0 ? c.substring(0, eq) : Path.of(c).getFileName().toString();
        dirs.put(name, Path.of(eq > 0 ? c.substring(eq + 1) : c));
        names.add(name);
      } else {
        names.add(c);
      }
    }
    if ("local".equals(memory) && names.isEmpty()) {
      throw new InputException("--memory local needs at least one --collection DIR");
    }
    MemoryEndpoint endpoint = InProcessNode.open(memory, dirs, modelFingerprint, security());
    ServiceMemory.Options options = new ServiceMemory.Options(names, documents, topK, nprobe, refine, deadlineMs, attempts);
    return new Backend() {
      @Override
      public Memory newMemory(LongLlama model, int batch) {
        return new ServiceMemory(endpoint, options, model.config(), modelFingerprint, batch);
      }

      @Override
      public String describe() {
        return "top-" + topK + " kNN memory from the " + endpoint + (names.isEmpty() ? "" : ", collections " + names)
            + (documents.isEmpty() ? "" : ", documents " + documents);
      }

      @Override
      public void close() {
        endpoint.close();
      }
    };
  }
}
