package io.longmem.memory.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.memory.shard.MappedFile;
import io.longmem.memory.shard.MemoryCollection;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A node writes answers on its own pool, and an answer pins its shards until it is closed. */
class NodePoolTest {
  @TempDir
  Path tmp;

  @Test
  void answersAreWrittenOnTheNodesPoolAndReleaseTheirShards() throws Exception {
    TestBooks books = TestBooks.write(tmp.resolve("books"));
    ServiceConfig c = books.config("local", null);
    c.searchThreads = 3;
    try (MemoryNode node = new MemoryNode(c)) {
      float[] q = TestBooks.randomQuery(2, 9);
      SearchQuery query = Protos.toQuery(TestBooks.request(q, 2, 5).build());
      Hits hits = node.search(query);
      Set<String> threads = node.write(hits, (h, pool) -> IntStream.range(0, 256)
          .mapToObj(i -> CompletableFuture.supplyAsync(() -> Thread.currentThread().getName(), pool)).toList()
          .stream().map(CompletableFuture::join).collect(Collectors.toSet()));
      for (String t : threads) {
        assertTrue(t.startsWith("memory-search-"), t + " is not one of the node's threads");
      }
      // written and closed: the pins are gone, so closing the collection unmaps its files at once
      MemoryCollection books1 = node.collections().get("books");
      MemoryCollection.Shard shard = books1.shards().get(0);
      Hits held = node.search(query);
      books1.close();
      shard.position(0); // still mapped: the unwritten answer holds it
      held.close();
      assertThrows(MappedFile.MappingClosedException.class, () -> shard.position(0));
      assertEquals(List.of(), node.refused().keySet().stream().toList());
    }
  }
}
