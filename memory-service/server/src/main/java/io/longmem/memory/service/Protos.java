package io.longmem.memory.service;

import io.longmem.memory.api.Wire;
import io.longmem.memory.api.WireFormatException;
import com.google.protobuf.UnsafeByteOperations;
import io.longmem.memory.faiss.MappedReads;
import io.longmem.memory.grpc.HeadResult;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/** Conversions between the wire messages and {@link SearchQuery} / {@link Hits}. */
public final class Protos {
  private Protos() {}

  public static SearchQuery toQuery(SearchRequest r) {
    float[] query;
    try {
      query = Wire.floats(r.getQuery(), "query");
    } catch (WireFormatException e) {
      throw RequestException.invalid(e.getMessage());
    }
    return new SearchQuery(r.getCollectionsList(), r.getSessionsList(), r.getLayer(), r.getHeads(), r.getQueries(),
        r.getHeadDim(), query, r.getK(), r.getDocumentsList(), r.getNprobe(), r.getEfSearch(), r.getRefine());
  }

  public static SearchRequest toProto(SearchQuery q) {
    return SearchRequest.newBuilder().addAllCollections(q.collections()).addAllSessions(q.sessions())
        .setLayer(q.layer()).setHeads(q.heads()).setQueries(q.queries()).setHeadDim(q.headDim())
        .setQuery(Wire.bytes(q.query(), q.query().length)).setK(q.k()).addAllDocuments(q.documents())
        .setNprobe(q.nprobe()).setEfSearch(q.efSearch()).setRefine(q.refine()).build();
  }

  /**
   * Writes the answer, reading each chosen pair's key and value once, straight into the message
   * bytes; heads are written side by side on {@code pool} (the node's), the caller writing the
   * first one itself.
   *
   * @param float16 keys and values as float16 (the client asked for {@code float16_pairs})
   */
  public static SearchResponse toResponse(Hits hits, boolean float16, Executor pool) {
    HeadResult[] heads = new HeadResult[hits.perHead.length];
    CompletableFuture<?>[] others = new CompletableFuture<?>[Math.max(0, heads.length - 1)];
    for (int hi = 1; hi < heads.length; hi++) {
      int h = hi;
      others[hi - 1] = CompletableFuture.runAsync(() -> heads[h] = head(hits, h, float16), pool);
    }
    if (heads.length > 0) {
      heads[0] = head(hits, 0, float16);
    }
    try {
      CompletableFuture.allOf(others).join();
    } catch (java.util.concurrent.CompletionException e) {
      throw e.getCause() instanceof RuntimeException re ? re : e;
    }
    return SearchResponse.newBuilder().addAllDocuments(hits.documents).addAllHeads(Arrays.asList(heads)).build();
  }

  private static HeadResult head(Hits hits, int hi, boolean float16) {
    Hits.Head h = hits.perHead[hi];
    int dim = hits.headDim;
    int bytes = dim * (float16 ? 2 : 4);
    byte[] keys = new byte[h.pairs * bytes];
    byte[] values = new byte[h.pairs * bytes];
    // pairs lying in mapped shard files, stored as asked, are copied as stored by a native
    // gather; the others (sessions, remote answers, another stored type) are read and converted
    int[] gathered = new int[h.pairs];
    int n = 0;
    float[] key = new float[dim];
    float[] value = new float[dim];
    ByteBuffer k = ByteBuffer.wrap(keys).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer v = ByteBuffer.wrap(values).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < h.pairs; i++) {
      Hits.Payload source = hits.sources.get(h.pairSource[i]);
      if (source.addressable(float16)) {
        gathered[n++] = i;
        continue;
      }
      source.read(h.pairRow[i], hi, key, value, 0);
      k.position(i * bytes);
      v.position(i * bytes);
      for (int d = 0; d < dim; d++) {
        if (float16) {
          k.putShort(io.longmem.memory.api.Float16.toHalf(key[d]));
          v.putShort(io.longmem.memory.api.Float16.toHalf(value[d]));
        } else {
          k.putFloat(key[d]);
          v.putFloat(value[d]);
        }
      }
    }
    if (n > 0) {
      long[] at = new long[n];
      byte[] tmp = n == h.pairs ? null : new byte[n * bytes];
      for (boolean isKey : new boolean[] {true, false}) {
        for (int j = 0; j < n; j++) {
          at[j] = hits.sources.get(h.pairSource[gathered[j]]).address(h.pairRow[gathered[j]], hi, isKey);
        }
        byte[] out = isKey ? keys : values;
        MappedReads.gather(at, n, bytes, tmp == null ? out : tmp, 0);
        if (tmp != null) {
          for (int j = 0; j < n; j++) {
            System.arraycopy(tmp, j * bytes, out, gathered[j] * bytes, bytes);
          }
        }
      }
    }
    return HeadResult.newBuilder().setPairs(h.pairs)
        .setKeys(UnsafeByteOperations.unsafeWrap(keys))
        .setValues(UnsafeByteOperations.unsafeWrap(values))
        .setPairDocument(Wire.ints(Arrays.copyOf(h.pairDocument, h.pairs)))
        .setPairPosition(Wire.ints(h.pairPosition()))
        .setScores(Wire.bytes(h.scores, h.scores.length)).setSlots(Wire.ints(h.slots)).build();
  }

  /** Reads a float32 answer (node-to-node answers are float32). */
  public static Hits fromResponse(SearchResponse r, int heads, int queries, int k, int headDim) {
    return fromResponse(r, heads, queries, k, headDim, false);
  }

  /**
   * Reads an answer; every size is checked, since it may come from another node.
   *
   * @param float16 the request asked for float16_pairs: keys and values are float16
   */
  public static Hits fromResponse(SearchResponse r, int heads, int queries, int k, int headDim, boolean float16) {
    if (r.getHeadsCount() != heads) {
      throw new IllegalStateException("answer has " + r.getHeadsCount() + " heads, asked for " + heads);
    }
    Hits out = new Hits(heads, queries, k, headDim);
    out.documents.addAll(r.getDocumentsList());
    float[][] keysPerHead = new float[heads][];
    float[][] valuesPerHead = new float[heads][];
    int source = out.addSource((row, head, key, value, off) -> {
      System.arraycopy(keysPerHead[head], (int) row * headDim, key, off, headDim);
      System.arraycopy(valuesPerHead[head], (int) row * headDim, value, off, headDim);
    });
    for (int h = 0; h < heads; h++) {
      HeadResult hr = r.getHeads(h);
      int m = hr.getPairs();
      keysPerHead[h] = float16 ? Wire.halfs(hr.getKeys(), "keys") : Wire.floats(hr.getKeys(), "keys");
      valuesPerHead[h] = float16 ? Wire.halfs(hr.getValues(), "values") : Wire.floats(hr.getValues(), "values");
      float[] scores = Wire.floats(hr.getScores(), "scores");
      int[] slots = Wire.ints(hr.getSlots());
      int[] pairDocument = Wire.ints(hr.getPairDocument());
      int[] pairPosition = Wire.ints(hr.getPairPosition());
      if (keysPerHead[h].length != m * headDim || valuesPerHead[h].length != m * headDim
          || scores.length != queries * k || slots.length != queries * k || pairDocument.length != m
          || pairPosition.length != m) {
        throw new IllegalStateException("answer for head " + h + " has inconsistent sizes");
      }
      Hits.Head head = out.perHead[h];
      for (int i = 0; i < m; i++) {
        int doc = pairDocument[i];
        if (doc < 0 || doc >= out.documents.size()) {
          throw new IllegalStateException("answer refers to document " + doc + " of " + out.documents.size());
        }
        head.addPair(source, i, doc, pairPosition[i]);
      }
      for (int i = 0; i < slots.length; i++) {
        if (slots[i] < -1 || slots[i] >= m) {
          throw new IllegalStateException("answer has slot " + slots[i] + " of " + m + " pairs");
        }
      }
      System.arraycopy(scores, 0, head.scores, 0, scores.length);
      System.arraycopy(slots, 0, head.slots, 0, slots.length);
    }
    return out;
  }
}
