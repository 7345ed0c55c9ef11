package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.shard.SmallCollections;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Files that change under a running node, and damaged collections beside good ones: the node
 * answers with a clear status for the damaged collection and keeps serving the others.
 */
class ChangedFilesTest {
  @Test
  void aFileTruncatedUnderTheNodeIsRefusedAndTheOthersStillAnswer(@TempDir Path tmp) throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    TestBooks other = TestBooks.write(tmp.resolve("other"));
    Path traversal = SmallCollections.write(tmp.resolve("traversal"), "Flat", 20);
    SmallCollections.editManifest(traversal, m -> SmallCollections.shard(m, 0).addProperty("id", "../../books/shards/shard-0"));
    ServiceConfig c = books.config("local", null);
    c.collections = Map.of("books", books.collection.toString(), "other", other.collection.toString(),
        "traversal", traversal.toString());
    List<ManagedChannel> open = new ArrayList<>();
    try (MemoryServer s = MemoryServer.start(c)) {
      assertTrue(s.node().refused().get("traversal").contains("is not a plain name"), s.node().refused().toString());
      MemoryGrpc.MemoryBlockingStub stub = TestBooks.client(s, open);
      float[] q = TestBooks.randomQuery(3, 1);
      books.assertExact(stub.search(TestBooks.request(q, 3, 10).build()), q, 3, 10, TestBooks.allDocs());

      Path arrow = books.collection.resolve("shards/shard-1/layer-02.arrow");
      try (FileChannel ch = FileChannel.open(arrow, StandardOpenOption.WRITE)) {
        ch.truncate(ch.size() / 2);
      }
      for (int round = 0; round < 2; round++) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
            () -> stub.search(TestBooks.request(q, 3, 10).build()));
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
        assertTrue(e.getStatus().getDescription().contains(arrow.toString())
            && e.getStatus().getDescription().contains("truncated under the node"), e.getStatus().getDescription());
      }
      // the whole collection is refused from now on, also a layer whose files are intact
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> stub.search(TestBooks.request(q, 3, 10).setLayer(1).build()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
      assertTrue(s.node().collections().get("books").damage().contains("truncated"));

      SearchRequest.Builder good = TestBooks.request(q, 3, 10).clearCollections().addCollections("other");
      other.assertExact(stub.search(good.build()), q, 3, 10, TestBooks.allDocs());
      e = assertThrows(StatusRuntimeException.class,
          () -> stub.search(TestBooks.request(q, 3, 10).clearCollections().addCollections("traversal").build()));
      assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode(), e.getStatus().toString());
    } finally {
      open.forEach(ManagedChannel::shutdownNow);
    }
  }
}
