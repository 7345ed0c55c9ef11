package io.longmem.retrieve;

import io.longmem.io.InputException;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.SessionBlocks;
import io.longmem.memory.api.Wire;
import ai.djl.ndarray.NDArray;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.grpc.AppendSessionRequest;
import io.longmem.memory.grpc.CollectionInfo;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.HeadResult;
import io.longmem.memory.grpc.ListCollectionsRequest;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.api.MemoryEndpoint;
import io.longmem.memory.api.MemoryRequestException;
import io.longmem.memory.api.MemoryUnavailableException;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.memory.Memory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * LongLLaMA's memory answered by the memory service: for each memory layer and step, the top-k
 * (key, value) pairs of each head for each query, from the chosen collections (documents encoded
 * beforehand) and from a session holding what this worker reads at query time (prompt windows,
 * local-cache overflow). Queries arrive rotated as the layer rotates them; memory keys are stored
 * unrotated, so the service's inner product is the attention score. Pairs a query does not get
 * (fewer than k exist) are masked out, so with an exact index and k at least the memory size the
 * attention equals dense memory's.
 *
 * <p>Every call has a deadline; searches are retried on UNAVAILABLE or a missed deadline, appends
 * only on UNAVAILABLE. When the service stays unreachable the request fails with
 * {@link MemoryUnavailableException}: decoding never goes on without its memory.
 */
public final class ServiceMemory implements Memory {
  private static final Logger LOG = LoggerFactory.getLogger(ServiceMemory.class);

  /**
   * @param collections collections searched (names as the service knows them)
   * @param documents restrict collections to these documents (empty: all)
   * @param topK pairs per head and query
   * @param nprobe IVF lists probed (0: the index's default)
   * @param refine re-scored candidates per wanted pair on approximate indexes (0: the service's default)
   * @param deadlineMs deadline of each call
   * @param attempts tries per call before giving up
   */
  public record Options(List<String> collections, List<String> documents, int topK, int nprobe, int refine,
      long deadlineMs, int attempts) {
    public Options {
      if (topK < 1) {
        throw new InputException("--memory-top-k must be >= 1, got " + topK);
      }
      if (attempts < 1 || deadlineMs < 1) {
        throw new InputException("memory calls need attempts >= 1 and a deadline >= 1 ms");
      }
      collections = List.copyOf(collections);
      documents = List.copyOf(documents);
    }

    public static Options topK(List<String> collections, int k) {
      return new Options(collections, List.of(), k, 0, 0, 30_000, 3);
    }
  }

  private final MemoryEndpoint endpoint;
  private final Options options;
  private final int heads;
  private final int headDim;
  private final List<Integer> layers;
  private final int batch;
  private final MemoryBlock.Storage storage;
  private final boolean float16;
  private final long collectionTokens;
  private final String[] sessions;
  private final Map<Integer, long[]> sessionTokens = new HashMap<>();

  /**
   * Connects to the endpoint and checks that each collection exists, was written by this model
   * ({@code modelFingerprint}) and has its memory layers and shapes.
   */
  public ServiceMemory(MemoryEndpoint endpoint, Options options, LongLlamaConfig config, String modelFingerprint,
      int batch) {
    this.endpoint = endpoint;
    this.options = options;
    this.heads = config.numHeads();
    this.headDim = config.headDim();
    this.layers = config.memLayers();
    this.storage = config.memDType().storage();
    // float16 memory travels as float16: half the bytes, nothing lost
    this.float16 = storage == MemoryBlock.Storage.FLOAT16;
    this.batch = batch;
    this.sessions = new String[batch];
    long tokens = 0;
    if (!options.collections().isEmpty()) {
      List<CollectionInfo> served = call("list collections", true,
          () -> endpoint.stub().withDeadlineAfter(options.deadlineMs(), TimeUnit.MILLISECONDS)
              .listCollections(ListCollectionsRequest.getDefaultInstance()).getCollectionsList());
      for (String name : options.collections()) {
        CollectionInfo c = served.stream().filter(x -> x.getName().equals(name)).findFirst().orElseThrow(
            () -> new MemoryRequestException("the " + endpoint + " has no collection '" + name + "' (it serves "
                + served.stream().map(CollectionInfo::getName).toList() + ")"));
        if (modelFingerprint != null && !modelFingerprint.equals(c.getModelFingerprint())) {
          throw new MemoryRequestException("collection '" + name + "' holds the memory of another model (fingerprint "
              + c.getModelFingerprint() + ", this model " + modelFingerprint + ")");
        }
        if (!c.getLayersList().containsAll(layers) || c.getHeads() != heads || c.getHeadDim() != headDim) {
          throw new MemoryRequestException("collection '" + name + "' has layers " + c.getLayersList() + ", "
              + c.getHeads() + " heads of dim " + c.getHeadDim() + "; the model's memory layers are " + layers + " with "
              + heads + " heads of dim " + headDim);
        }
        tokens += c.getTokens();
      }
      for (String d : options.documents()) {
        if (served.stream().noneMatch(c -> options.collections().contains(c.getName()) && c.getDocumentsList().contains(d))) {
          throw new MemoryRequestException("no chosen collection holds document '" + d + "'");
        }
      }
    }
    this.collectionTokens = tokens;
  }

  /**
   * Sends each batch row's real tokens (mask 0) to that row's session as one {@link MemoryBlock}:
   * head-major as the model holds them, positions counting on from what the row appended before.
   */
  @Override
  public void append(int layer, NDArray keys, NDArray values, NDArray mask) {
    long[] s = keys.getShape().getShape(); // [B, H, n, D]
    int n = (int) s[2];
    float[] k = keys.toFloatArray();
    float[] v = values.toFloatArray();
    float[] m = mask.toFloatArray();
    long[] counts = sessionTokens.computeIfAbsent(layer, l -> new long[batch]);
    for (int b = 0; b < batch; b++) {
      int[] real = new int[n];
      int r = 0;
      for (int t = 0; t < n; t++) {
        if (m[b * n + t] == 0f) {
          real[r++] = t;
        }
      }
      if (r == 0) {
        continue;
      }
      float[] pk = new float[heads * r * headDim];
      float[] pv = new float[heads * r * headDim];
      int[] positions = new int[r];
      for (int h = 0; h < heads; h++) {
        for (int i = 0; i < r; i++) {
          int src = ((b * heads + h) * n + real[i]) * headDim;
          System.arraycopy(k, src, pk, (h * r + i) * headDim, headDim);
          System.arraycopy(v, src, pv, (h * r + i) * headDim, headDim);
        }
      }
      for (int i = 0; i < r; i++) {
        positions[i] = (int) (counts[b] + i);
      }
      MemoryBlock block = new MemoryBlock(layer, "", positions, heads, headDim, pk, pv, storage);
      AppendSessionRequest req = SessionBlocks.toRequest(session(b), block);
      call("append to session", false, () -> endpoint.stub()
          .withDeadlineAfter(options.deadlineMs(), TimeUnit.MILLISECONDS).appendSession(req));
      counts[b] += r;
    }
  }

  private String session(int row) {
    if (sessions[row] == null) {
      CreateSessionRequest req = CreateSessionRequest.newBuilder().addAllLayers(layers).setHeads(heads)
          .setHeadDim(headDim).build();
      sessions[row] = call("create session", false, () -> endpoint.stub()
          .withDeadlineAfter(options.deadlineMs(), TimeUnit.MILLISECONDS).createSession(req).getSession());
    }
    return sessions[row];
  }

  @Override
  public Retrieved retrieve(int layer, NDArray queries) {
    long[] s = queries.getShape().getShape(); // [B, H, q, D]
    int q = (int) s[2];
    int k = options.topK();
    float[] all = queries.toFloatArray();
    int rowFloats = heads * q * headDim;
    float[] outK = new float[Math.multiplyExact(batch, Math.multiplyExact(heads * q * k, headDim))];
    float[] outV = new float[outK.length];
    float[] mask = new float[batch * heads * q * k];
    Arrays.fill(mask, MASK_MIN);
    for (int b = 0; b < batch; b++) {
      if (options.collections().isEmpty() && sessions[b] == null) {
        continue; // nothing remembered for this row yet
      }
      SearchRequest.Builder req = SearchRequest.newBuilder().addAllCollections(options.collections())
          .setLayer(layer).setHeads(heads).setQueries(q).setHeadDim(headDim).setK(k)
          .setQuery(Wire.bytes(all, b * rowFloats, rowFloats))
          .addAllDocuments(options.documents()).setNprobe(options.nprobe()).setRefine(options.refine())
          .setFloat16Pairs(float16);
      if (sessions[b] != null) {
        req.addSessions(sessions[b]);
      }
      SearchRequest request = req.build();
      SearchResponse resp = call("search", true, () -> endpoint.stub()
          .withDeadlineAfter(options.deadlineMs(), TimeUnit.MILLISECONDS).search(request));
      if (resp.getHeadsCount() != heads) {
        throw new IllegalStateException("the " + endpoint + " answered " + resp.getHeadsCount() + " heads, asked " + heads);
      }
      for (int h = 0; h < heads; h++) {
        HeadResult hr = resp.getHeads(h);
        float[] pk = float16 ? Wire.halfs(hr.getKeys(), "keys") : Wire.floats(hr.getKeys(), "keys");
        float[] pv = float16 ? Wire.halfs(hr.getValues(), "values") : Wire.floats(hr.getValues(), "values");
        int[] slots = Wire.ints(hr.getSlots());
        if (slots.length != q * k || pk.length != hr.getPairs() * headDim) {
          throw new IllegalStateException("the " + endpoint + " answered a malformed head " + h);
        }
        for (int i = 0; i < q; i++) {
          for (int j = 0; j < k; j++) {
            int slot = slots[i * k + j];
            if (slot < 0) {
              continue;
            }
            int cell = ((b * heads + h) * q + i) * k + j;
            System.arraycopy(pk, slot * headDim, outK, cell * headDim, headDim);
            System.arraycopy(pv, slot * headDim, outV, cell * headDim, headDim);
            mask[cell] = 0f;
          }
        }
      }
    }
    return Retrieved.perQuery(queries.getManager(), outK, outV, mask, batch, heads, q, k, headDim);
  }

  @Override
  public int pairsPerQuery() {
    return options.topK();
  }

  @Override
  public long size(int layer) {
    long[] c = sessionTokens.get(layer);
    long own = c == null ? 0 : Arrays.stream(c).max().orElse(0);
    return collectionTokens + own;
  }

  /** Tokens this worker appended to its session(s) for a layer (row 0). */
  public long sessionTokens(int layer) {
    long[] c = sessionTokens.get(layer);
    return c == null ? 0 : c[0];
  }

  @Override
  public void close() {
    List<String> open = new ArrayList<>();
    for (String s : sessions) {
      if (s != null) {
        open.add(s);
      }
    }
    for (String s : open) {
      try {
        endpoint.stub().withDeadlineAfter(options.deadlineMs(), TimeUnit.MILLISECONDS)
            .dropSession(DropSessionRequest.newBuilder().setSession(s).build());
      } catch (StatusRuntimeException e) {
        // one line for the user (a dead service is already being reported); the cause for whoever debugs it
        LOG.warn("could not drop memory session {} on the {}: {} (the service expires nothing by itself)", s, endpoint,
            describe(e.getStatus()));
        LOG.debug("dropping memory session {} failed", s, e);
      }
    }
    Arrays.fill(sessions, null);
  }

  private <T> T call(String what, boolean idempotent, Supplier<T> c) {
    long backoff = 100;
    for (int attempt = 1; ; attempt++) {
      try {
        return c.get();
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        boolean transientFailure = code == Status.Code.UNAVAILABLE || (idempotent && code == Status.Code.DEADLINE_EXCEEDED);
        if (!transientFailure) {
          if (code == Status.Code.INVALID_ARGUMENT || code == Status.Code.NOT_FOUND
              || code == Status.Code.UNAUTHENTICATED || code == Status.Code.PERMISSION_DENIED) {
            throw new MemoryRequestException("the " + endpoint + " refused to " + what + ": " + e.getStatus().getDescription());
          }
          throw new MemoryUnavailableException("memory " + what + " failed on the " + endpoint + ": "
              + describe(e.getStatus()), e);
        }
        if (attempt >= options.attempts()) {
          throw new MemoryUnavailableException("the " + endpoint + " did not answer '" + what + "' after " + attempt
              + " attempt(s) of " + options.deadlineMs() + " ms (" + describe(e.getStatus())
              + "); the request fails rather than decode without its memory", e);
        }
        LOG.warn("memory {} failed ({}), attempt {} of {}; retrying in {} ms", what, describe(e.getStatus()), attempt,
            options.attempts(), backoff);
        LOG.debug("memory {} failed", what, e);
        try {
          Thread.sleep(backoff);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw new MemoryUnavailableException("interrupted while retrying memory " + what, e);
        }
        backoff *= 2;
      }
    }
  }

  /**
   * A status as one line: its code and description. {@code Status.toString} appends its cause's
   * whole stack trace, which is not for users (it goes to the debug log).
   */
  static String describe(Status status) {
    String d = status.getDescription();
    if (d == null && status.getCause() != null) {
      d = status.getCause().getMessage(); // e.g. "Connection refused: /127.0.0.1:7070"
    }
    String line = d == null ? status.getCode().toString() : status.getCode() + ": " + d;
    int nl = line.indexOf('\n');
    return nl < 0 ? line : line.substring(0, nl);
  }
}
