package io.longmem.memory.service;

import io.grpc.Status;
import io.longmem.memory.security.Caller;
import io.longmem.memory.api.MemoryBlock;
import io.longmem.memory.api.SessionBlocks;
import io.longmem.memory.api.WireFormatException;
import io.grpc.stub.StreamObserver;
import io.longmem.memory.grpc.AppendSessionRequest;
import io.longmem.memory.grpc.AppendSessionResponse;
import io.longmem.memory.grpc.CollectionInfo;
import io.longmem.memory.grpc.CreateSessionRequest;
import io.longmem.memory.grpc.CreateSessionResponse;
import io.longmem.memory.grpc.DropSessionRequest;
import io.longmem.memory.grpc.DropSessionResponse;
import io.longmem.memory.grpc.ListCollectionsRequest;
import io.longmem.memory.grpc.ListCollectionsResponse;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.grpc.SearchShardsRequest;
import io.longmem.memory.faiss.MappedReadException;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.MappedFile;
import io.longmem.memory.shard.MemoryCollection;
import java.util.Map;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The gRPC face of a {@link MemoryNode}: converts messages and maps errors to status codes. */
final class MemoryGrpcService extends MemoryGrpc.MemoryImplBase {
  private static final Logger LOG = LoggerFactory.getLogger(MemoryGrpcService.class);
  private final MemoryNode node;

  MemoryGrpcService(MemoryNode node) {
    this.node = node;
  }

  /**
   * A search holds its share of the node's budget of searches in flight until its answer is sent
   * (the answer's bytes live until then), and stops when the call is cancelled or its deadline
   * passes.
   */
  @Override
  public void search(SearchRequest request, StreamObserver<SearchResponse> out) {
    MemoryNode.Admitted[] admitted = new MemoryNode.Admitted[1];
    try {
      answer(out, () -> {
        admitted[0] = node.admit(Protos.toQuery(request), request.getFloat16Pairs(), owner());
        return node.write(node.search(admitted[0]),
            (hits, pool) -> Protos.toResponse(hits, request.getFloat16Pairs(), pool));
      });
    } finally {
      if (admitted[0] != null) {
        admitted[0].close();
      }
    }
  }

  @Override
  public void searchShards(SearchShardsRequest request, StreamObserver<SearchResponse> out) {
    MemoryNode.Admitted[] admitted = new MemoryNode.Admitted[1];
    try {
      answer(out, () -> {
        admitted[0] = node.admitShards(request.getCollection(), request.getShardsList(),
            Protos.toQuery(request.getSearch()));
        return node.write(node.search(admitted[0]), (hits, pool) -> Protos.toResponse(hits, false, pool));
      });
    } finally {
      if (admitted[0] != null) {
        admitted[0].close();
      }
    }
  }

  @Override
  public void listCollections(ListCollectionsRequest request, StreamObserver<ListCollectionsResponse> out) {
    answer(out, () -> {
      ListCollectionsResponse.Builder b = ListCollectionsResponse.newBuilder();
      for (Map.Entry<String, MemoryCollection> e : node.collections().entrySet()) {
        Manifest m = e.getValue().manifest();
        CollectionInfo.Builder c = CollectionInfo.newBuilder().setName(e.getKey())
            .setModelFingerprint(m.modelFingerprint()).addAllLayers(m.layout().layers())
            .setHeads(m.layout().heads()).setHeadDim(m.layout().headDim()).setIndexFactory(m.indexFactory())
            .setTokens(m.rows()).setShards(m.shards().size());
        m.shards().forEach(s -> s.documents().forEach(d -> c.addDocuments(d.id())));
        b.addCollections(c);
      }
      return b.build();
    });
  }

  @Override
  public void createSession(CreateSessionRequest request, StreamObserver<CreateSessionResponse> out) {
    answer(out, () -> CreateSessionResponse.newBuilder()
        .setSession(node.createSession(owner(), request.getLayersList(), request.getHeads(), request.getHeadDim()))
        .build());
  }

  @Override
  public void appendSession(AppendSessionRequest request, StreamObserver<AppendSessionResponse> out) {
    answer(out, () -> {
      Session s = node.session(request.getSession(), owner());
      MemoryBlock block = SessionBlocks.fromRequest(request, s.heads(), s.headDim());
      return AppendSessionResponse.newBuilder()
          .setTokens(node.appendSession(request.getSession(), owner(), block, SessionBlocks.positioned(request)))
          .build();
    });
  }

  @Override
  public void dropSession(DropSessionRequest request, StreamObserver<DropSessionResponse> out) {
    answer(out, () -> {
      node.dropSession(request.getSession(), owner());
      return DropSessionResponse.getDefaultInstance();
    });
  }

  /** Who makes this call: its sessions are the ones it may name. */
  private static String owner() {
    return Caller.current().name();
  }

  /**
   * Runs a call and maps its failure to a status: a {@link RequestException} to its kind's code,
   * a read of a collection closed under the call ({@link MappedFile.MappingClosedException}) or
   * of a file that changed on disk under the node ({@link MappedFile.FileChangedException}, {@link
   * MappedReadException}) to UNAVAILABLE (another replica may answer); anything else is this
   * node's fault: INTERNAL, with the cause logged, whatever its type (an IllegalArgumentException
   * from deep inside is no fault of the request).
   */
  static <T> void answer(StreamObserver<T> out, Supplier<T> body) {
    T result;
    try {
      result = body.get();
    } catch (RequestException e) {
      out.onError(status(e.kind()).withDescription(e.getMessage()).asRuntimeException());
      return;
    } catch (WireFormatException e) { // an array field of the request
      out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
      return;
    } catch (MappedFile.MappingClosedException | MappedReadException e) { // closed, or changed on disk
      LOG.warn("request refused: {}", e.getMessage());
      out.onError(Status.UNAVAILABLE.withDescription(e.getMessage()).asRuntimeException());
      return;
    } catch (RuntimeException e) {
      LOG.error("request failed", e);
      out.onError(Status.INTERNAL.withDescription(e.toString()).asRuntimeException());
      return;
    }
    out.onNext(result);
    out.onCompleted();
  }

  private static Status status(RequestException.Kind kind) {
    switch (kind) {
      case INVALID_ARGUMENT: return Status.INVALID_ARGUMENT;
      case NOT_FOUND: return Status.NOT_FOUND;
      case RESOURCE_EXHAUSTED: return Status.RESOURCE_EXHAUSTED;
      case UNAVAILABLE: return Status.UNAVAILABLE;
      case FAILED_PRECONDITION: return Status.FAILED_PRECONDITION;
      case CANCELLED: return Status.CANCELLED;
      case DEADLINE_EXCEEDED: return Status.DEADLINE_EXCEEDED;
      default: return Status.UNKNOWN;
    }
  }
}
