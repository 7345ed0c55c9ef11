package io.longmem.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import io.longmem.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Ids, pieces and decoded text identical to the SentencePiece library's, for both OpenLLaMA models. */
class SentencePieceTokenizerTest {
  private static final Path DIR = Fixtures.dir("tokenizers");

  static List<Arguments> cases() throws IOException {
    JsonObject models = Fixtures.json(DIR.resolve("cases.json")).getAsJsonObject("models");
    List<Arguments> out = new ArrayList<>();
    for (String model : models.keySet()) {
      for (JsonElement c : models.getAsJsonObject(model).getAsJsonArray("cases")) {
        out.add(Arguments.of(model, c.getAsJsonObject()));
      }
    }
    return out;
  }

  @ParameterizedTest(name = "{0}: {1}")
  @MethodSource("cases")
  void matchesSentencePiece(String model, JsonObject c) throws IOException {
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(DIR.resolve(model + ".model"));
    String text = c.get("text").getAsString();
    int[] expected = c.getAsJsonArray("ids").asList().stream().mapToInt(JsonElement::getAsInt).toArray();
    int[] ids = tok.encode(text);
    assertArrayEquals(expected, ids, "ids of " + text);
    List<String> pieces = new ArrayList<>();
    for (int id : ids) {
      pieces.add(tok.piece(id));
    }
    List<String> expectedPieces = c.getAsJsonArray("pieces").asList().stream().map(JsonElement::getAsString).toList();
    assertEquals(expectedPieces, pieces);
    assertEquals(c.get("decoded").getAsString(), tok.decode(ids), "decoded");
    int[] withBos = tok.encodeWithBos(text);
    assertEquals(1, withBos[0]);
    assertEquals(c.get("decoded").getAsString(), tok.decode(withBos), "BOS decodes to nothing");
  }

  @Test
  void modelMetadata() throws IOException {
    for (String model : new String[] {"openllama_v1", "openllama_v2"}) {
      SentencePieceTokenizer tok = SentencePieceTokenizer.load(DIR.resolve(model + ".model"));
      assertEquals(32000, tok.vocabSize());
      assertEquals(1, tok.bosId());
      assertEquals(2, tok.eosId());
      assertEquals(0, tok.unkId());
    }
  }

  @Test
  void badInputIsAClearError(@TempDir Path tmp) throws IOException {
    SentencePieceTokenizer tok = SentencePieceTokenizer.load(DIR.resolve("openllama_v2.model"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> tok.decode(new int[] {5, 32000}));
    assertEquals("token id 32000 is outside the vocabulary [0, 32000)", e.getMessage());
    Path junk = Files.write(tmp.resolve("junk.model"), "not a model".getBytes());
    assertThrows(IllegalArgumentException.class, () -> SentencePieceTokenizer.load(junk));
    assertThrows(java.nio.file.NoSuchFileException.class, () -> SentencePieceTokenizer.load(tmp.resolve("missing")));
  }
}
