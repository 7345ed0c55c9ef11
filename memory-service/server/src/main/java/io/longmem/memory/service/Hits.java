package io.longmem.memory.service;

import io.longmem.memory.faiss.MappedReads;
import io.longmem.memory.shard.MappedFile;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What one source (a shard, a session, a remote node) found for a search, or the merge of several:
 * per head, the distinct pairs some query selected, and per query its k best as (score, slot into
 * the pairs), best first. The exact top-k of a union is the top-k of the sources' top-k lists,
 * which is what {@link #merge} computes.
 *
 * <p>Pairs are references (source, row) until the answer is written: keys and values are read
 * once, for the winners only, straight from where they lie (a memory-mapped shard, a session).
 * So an answer holds the {@link MappedFile.Pin}s of the shards its pairs lie in: {@link #close}
 * it once written (a merge takes over its parts' pins); until then those files stay mapped.
 */
public final class Hits implements AutoCloseable {
  /** Where the keys and values of a source's pairs are read from. */
  public interface Payload {
    /** Copies head_dim floats of the key and of the value of (row, head) into key/value at off. */
    void read(long row, int head, float[] key, float[] value, int off);

    /**
     * Whether keys and values are stored in memory as float16 (or float32, {@code float16} false)
     * at {@link #address}es: then an answer of that type gathers them natively (see MappedReads).
     */
    default boolean addressable(boolean float16) {
      return false;
    }

    /** Where the key (or value) of (row, head) lies in memory, when {@link #addressable}. */
    default long address(long row, int head, boolean key) {
      throw new UnsupportedOperationException("this source has no addresses");
    }

    /** Where a row's position (an int32) lies in memory; 0 if this source has no addresses. */
    default long positionAddress(long row) {
      return 0;
    }

    /** The position of a pair added with {@link #LATER}: read for the winners only. */
    default int position(long row) {
      throw new IllegalStateException("this source gives positions when pairs are added");
    }
  }

  /** A pair's position read from its source when the answer is written (a shard's are on disk). */
  static final int LATER = Integer.MIN_VALUE;

  final int heads;
  final int queries;
  final int k;
  final int headDim;
  /** document (or session) ids that pairs refer to */
  final List<String> documents = new ArrayList<>();
  final List<Payload> sources = new ArrayList<>();
  final Head[] perHead;
  /** the mapped files the sources' addresses point into, released by {@link #close} */
  private final List<MappedFile.Pin> pins = new ArrayList<>();

  /** The pairs and choices of one head. */
  public static final class Head {
    int pairs;
    int[] pairSource = new int[0];
    long[] pairRow = new long[0];
    int[] pairDocument = new int[0];
    int[] pairPosition = new int[0];
    final float[] scores;
    final int[] slots;
    private final Hits owner;
    private final int index;

    Head(Hits owner, int index) {
      this.owner = owner;
      this.index = index;
      scores = new float[owner.queries * owner.k];
      slots = new int[owner.queries * owner.k];
      Arrays.fill(scores, Float.NEGATIVE_INFINITY);
      Arrays.fill(slots, -1);
    }

    /** Adds a pair and returns its slot. */
    int addPair(int source, long row, int document, int position) {
      if (pairs == pairSource.length) {
        int cap = Math.max(16, pairs * 2);
        pairSource = Arrays.copyOf(pairSource, cap);
        pairRow = Arrays.copyOf(pairRow, cap);
        pairDocument = Arrays.copyOf(pairDocument, cap);
        pairPosition = Arrays.copyOf(pairPosition, cap);
      }
      pairSource[pairs] = source;
      pairRow[pairs] = row;
      pairDocument[pairs] = document;
      pairPosition[pairs] = position;
      return pairs++;
    }

    public int pairs() {
      return pairs;
    }

    /** Reads the pairs' keys and values: [pairs, head_dim] each. */
    public float[][] keysAndValues() {
      int dim = owner.headDim;
      float[] keys = new float[pairs * dim];
      float[] values = new float[pairs * dim];
      for (int i = 0; i < pairs; i++) {
        owner.sources.get(pairSource[i]).read(pairRow[i], index, keys, values, i * dim);
      }
      return new float[][] {keys, values};
    }

    public float[] keys() {
      return keysAndValues()[0];
    }

    public float[] values() {
      return keysAndValues()[1];
    }

    public int[] pairDocument() {
      return Arrays.copyOf(pairDocument, pairs);
    }

    public int[] pairPosition() {
      int[] out = Arrays.copyOf(pairPosition, pairs);
      // positions read now (from shards) are gathered natively where their sources give addresses
      int[] later = new int[pairs];
      long[] at = new long[pairs];
      int n = 0;
      for (int i = 0; i < pairs; i++) {
        if (out[i] == LATER) {
          long a = owner.sources.get(pairSource[i]).positionAddress(pairRow[i]);
          if (a != 0) {
            later[n] = i;
            at[n++] = a;
          } else {
            out[i] = owner.sources.get(pairSource[i]).position(pairRow[i]);
          }
        }
      }
      if (n > 0) {
        byte[] bytes = new byte[n * 4];
        MappedReads.gather(at, n, 4, bytes, 0);
        java.nio.IntBuffer ints = ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN).asIntBuffer();
        for (int j = 0; j < n; j++) {
          out[later[j]] = ints.get(j);
        }
      }
      return out;
    }

    public float[] scores() {
      return scores;
    }

    public int[] slots() {
      return slots;
    }
  }

  Hits(int heads, int queries, int k, int headDim) {
    this.heads = heads;
    this.queries = queries;
    this.k = k;
    this.headDim = headDim;
    perHead = new Head[heads];
    for (int h = 0; h < heads; h++) {
      perHead[h] = new Head(this, h);
    }
  }

  public int heads() {
    return heads;
  }

  public int queries() {
    return queries;
  }

  public int k() {
    return k;
  }

  public int headDim() {
    return headDim;
  }

  public List<String> documents() {
    return documents;
  }

  public Head head(int h) {
    return perHead[h];
  }

  int document(String id, Map<String, Integer> index) {
    return index.computeIfAbsent(id, d -> {
      documents.add(d);
      return documents.size() - 1;
    });
  }

  int addSource(Payload p) {
    sources.add(p);
    return sources.size() - 1;
  }

  /** Keeps files mapped until this answer is closed (the sources of its pairs read them by address). */
  void hold(MappedFile.Pin pin) {
    synchronized (pins) {
      pins.add(pin);
    }
  }

  /** Releases the pins of the files its pairs lie in: read nothing from this answer after. */
  @Override
  public void close() {
    List<MappedFile.Pin> held;
    synchronized (pins) {
      held = new ArrayList<>(pins);
      pins.clear();
    }
    held.forEach(MappedFile.Pin::close);
  }

  /** Closes every answer, also when one fails. */
  static void closeAll(List<Hits> parts) {
    for (Hits h : parts) {
      if (h != null) {
        h.close();
      }
    }
  }

  /** Takes over another answer's pins (its pairs were copied here). */
  private void takePins(Hits from) {
    if (from == this) {
      return;
    }
    synchronized (from.pins) {
      synchronized (pins) {
        pins.addAll(from.pins);
      }
      from.pins.clear();
    }
  }

  /**
   * The top-k of several sources' hits (each sorted, with its own k), pairs deduplicated per head;
   * ties go to the earlier part. The merge takes over the parts' pins (close the merge, not them).
   */
  static Hits merge(List<Hits> parts, int heads, int queries, int k, int headDim) {
    Hits out = new Hits(heads, queries, k, headDim);
    for (Hits part : parts) {
      out.takePins(part);
    }
    Map<String, Integer> docIndex = new HashMap<>();
    int[][] docMap = new int[parts.size()][];
    int[][] sourceMap = new int[parts.size()][];
    for (int p = 0; p < parts.size(); p++) {
      Hits part = parts.get(p);
      docMap[p] = new int[part.documents.size()];
      for (int d = 0; d < part.documents.size(); d++) {
        docMap[p][d] = out.document(part.documents.get(d), docIndex);
      }
      sourceMap[p] = new int[part.sources.size()];
      for (int s = 0; s < part.sources.size(); s++) {
        sourceMap[p][s] = out.addSource(part.sources.get(s));
      }
    }
    int[] cursor = new int[parts.size()];
    for (int h = 0; h < heads; h++) {
      Head target = out.perHead[h];
      int[][] copied = new int[parts.size()][]; // part's slot -> merged slot, -1 until copied
      for (int p = 0; p < parts.size(); p++) {
        copied[p] = new int[parts.get(p).perHead[h].pairs];
        Arrays.fill(copied[p], -1);
      }
      for (int q = 0; q < queries; q++) {
        Arrays.fill(cursor, 0);
        for (int r = 0; r < k; r++) {
          // the best next candidate among the parts' lists (ties: earlier part first)
          int best = -1;
          float bestScore = Float.NEGATIVE_INFINITY;
          for (int p = 0; p < parts.size(); p++) {
            Head src = parts.get(p).perHead[h];
            int pk = parts.get(p).k; // parts may hold fewer (or more) per query than the merge keeps
            int at = q * pk + cursor[p];
            if (cursor[p] < pk && src.slots[at] >= 0 && (best < 0 || src.scores[at] > bestScore)) {
              best = p;
              bestScore = src.scores[at];
            }
          }
          if (best < 0) {
            break;
          }
          Head src = parts.get(best).perHead[h];
          int srcSlot = src.slots[q * parts.get(best).k + cursor[best]];
          cursor[best]++;
          int slot = copied[best][srcSlot];
          if (slot < 0) {
            slot = target.addPair(sourceMap[best][src.pairSource[srcSlot]], src.pairRow[srcSlot],
                docMap[best][src.pairDocument[srcSlot]], src.pairPosition[srcSlot]);
            copied[best][srcSlot] = slot;
          }
          target.scores[q * k + r] = bestScore;
          target.slots[q * k + r] = slot;
        }
      }
    }
    return out;
  }
}
