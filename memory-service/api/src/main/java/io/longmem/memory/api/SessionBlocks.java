package io.longmem.memory.api;

import io.longmem.memory.grpc.AppendSessionRequest;
import java.util.Arrays;

/**
 * A {@link MemoryBlock} as an {@code AppendSessionRequest} and back: the one place that knows how
 * a session append travels, so the worker that sends blocks and the service that keeps them agree
 * by construction. The wire layout is the block's own ([heads, n, head_dim] float32), so neither
 * side reorders anything.
 */
public final class SessionBlocks {
  private SessionBlocks() {}

  /** The request that appends {@code block} to {@code session} (its layer, tokens, positions). */
  public static AppendSessionRequest toRequest(String session, MemoryBlock block) {
    AppendSessionRequest.Builder b = AppendSessionRequest.newBuilder().setSession(session).setLayer(block.layer())
        .setTokens(block.tokens()).setKeys(Wire.bytes(block.keys(), block.keys().length))
        .setValues(Wire.bytes(block.values(), block.values().length));
    for (int p : block.positions()) {
      b.addPositions(p);
    }
    return b.build();
  }

  /**
   * The block a request carries, for a session of {@code heads} heads of dim {@code headDim}
   * (document empty, float32). A request without positions gets 0..n-1: the proto's "0.. in
   * arrival order", which a session reads as counting on from the tokens it holds (see
   * {@link #positioned}).
   *
   * @throws WireFormatException when the tokens are not positive, an array's bytes are not whole
   *     float32 values, keys/values are not heads x tokens x head_dim, or positions are not one per token
   */
  public static MemoryBlock fromRequest(AppendSessionRequest r, int heads, int headDim) {
    float[] keys = Wire.floats(r.getKeys(), "keys");
    float[] values = Wire.floats(r.getValues(), "values");
    int n = r.getTokens();
    if (n <= 0) {
      throw new WireFormatException("tokens must be positive, got " + n);
    }
    long expected = (long) heads * n * headDim;
    if (keys.length != expected || values.length != expected) {
      throw new WireFormatException("keys/values: " + keys.length + "/" + values.length + " floats, heads x tokens x "
          + "head_dim = " + expected);
    }
    int[] positions;
    if (positioned(r)) {
      if (r.getPositionsCount() != n) {
        throw new WireFormatException("positions: " + r.getPositionsCount() + " for " + n + " tokens");
      }
      positions = r.getPositionsList().stream().mapToInt(Integer::intValue).toArray();
    } else {
      positions = new int[n];
      Arrays.setAll(positions, i -> i);
    }
    return new MemoryBlock(r.getLayer(), "", positions, heads, headDim, keys, values, MemoryBlock.Storage.FLOAT32);
  }

  /** Whether the request names its tokens' positions (otherwise they follow the session's count). */
  public static boolean positioned(AppendSessionRequest r) {
    return r.getPositionsCount() != 0;
  }
}
