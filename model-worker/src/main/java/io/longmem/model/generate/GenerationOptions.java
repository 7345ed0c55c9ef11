package io.longmem.model.generate;

import io.longmem.io.InputException;
import java.util.List;

/**
 * How to pick tokens: greedy, or sampling with temperature, then top-k, then top-p (the order
 * Hugging Face applies them), from a seeded generator so a run can be repeated.
 *
 * @param topK 0 keeps every token
 * @param topP 1 keeps every token
 * @param eosId stop after this id; negative: never
 * @param stopStrings stop once the decoded text contains one (it is cut off)
 */
public record GenerationOptions(
    int maxNewTokens,
    boolean greedy,
    float temperature,
    int topK,
    float topP,
    long seed,
    int eosId,
    List<String> stopStrings,
    int lastContextLength) {

  public GenerationOptions {
    stopStrings = List.copyOf(stopStrings);
    if (maxNewTokens < 1) {
      throw new InputException("max new tokens must be >= 1, got " + maxNewTokens);
    }
    if (!greedy && !(temperature > 0f) || Float.isInfinite(temperature)) {
      throw new InputException("temperature must be a positive number, got " + temperature);
    }
    if (topK < 0) {
      throw new InputException("top-k must be >= 0 (0 = off), got " + topK);
    }
    if (!(topP > 0f && topP <= 1f)) {
      throw new InputException("top-p must be in (0, 1], got " + topP);
    }
    if (lastContextLength < 0) {
      throw new InputException("last context length must be >= 0, got " + lastContextLength);
    }
    for (String s : stopStrings) {
      if (s.isEmpty()) {
        throw new InputException("stop strings must not be empty");
      }
    }
  }

  public static GenerationOptions greedy(int maxNewTokens, int eosId, int lastContextLength) {
    return new GenerationOptions(maxNewTokens, true, 1f, 0, 1f, 0L, eosId, List.of(), lastContextLength);
  }
}
