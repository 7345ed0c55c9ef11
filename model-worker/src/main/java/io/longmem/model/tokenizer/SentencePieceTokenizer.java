package io.longmem.model.tokenizer;

import io.longmem.io.InputException;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * A SentencePiece BPE tokenizer (the LLaMA / OpenLLaMA {@code tokenizer.model}), producing the ids
 * the SentencePiece library produces: identity normalization with the model's whitespace flags,
 * highest-score-first pair merges, and byte fallback for characters outside the vocabulary.
 *
 * <p>The model file is a protobuf {@code ModelProto}; it is read with protobuf-java's wire reader,
 * field by field, so no generated code is needed for the handful of fields BPE encoding uses.
 */
public final class SentencePieceTokenizer {
  private static final int NORMAL = 1;
  private static final int UNKNOWN = 2;
  private static final int CONTROL = 3;
  private static final int USER_DEFINED = 4;
  private static final int UNUSED = 5;
  private static final int BYTE = 6;
  private static final int MODEL_BPE = 2;
  private static final char SPACE = '\u2581';

  private final String[] pieces;
  private final float[] scores;
  private final int[] types;
  private final Map<String, Integer> mergeable = new HashMap<>();
  private final int[] byteIds = new int[256];
  private final List<String> userDefined = new ArrayList<>();
  private final boolean addDummyPrefix;
  private final boolean removeExtraWhitespaces;
  private final boolean escapeWhitespaces;
  private final boolean byteFallback;
  private final int unkId;
  private final int bosId;
  private final int eosId;

  private SentencePieceTokenizer(List<String> p, List<Float> s, List<Integer> t, Trainer trainer, Normalizer norm) {
    pieces = p.toArray(new String[0]);
    scores = new float[s.size()];
    types = new int[t.size()];
    for (int i = 0; i < pieces.length; i++) {
      scores[i] = s.get(i);
      types[i] = t.get(i);
    }
    java.util.Arrays.fill(byteIds, -1);
    for (int i = 0; i < pieces.length; i++) {
      switch (types[i]) {
        case NORMAL:
        case UNUSED:
          mergeable.put(pieces[i], i);
          break;
        case USER_DEFINED:
          mergeable.put(pieces[i], i);
          userDefined.add(pieces[i]);
          break;
        case BYTE:
          if (pieces[i].length() == 6 && pieces[i].startsWith("<0x")) {
            byteIds[Integer.parseInt(pieces[i].substring(3, 5), 16)] = i;
          }
          break;
        default:
          break;
      }
    }
    userDefined.sort((a, b) -> b.length() - a.length());
    addDummyPrefix = norm.addDummyPrefix;
    removeExtraWhitespaces = norm.removeExtraWhitespaces;
    escapeWhitespaces = norm.escapeWhitespaces;
    byteFallback = trainer.byteFallback;
    unkId = trainer.unkId;
    bosId = trainer.bosId;
    eosId = trainer.eosId;
    if (unkId < 0 || unkId >= pieces.length) {
      throw new InputException("tokenizer model has no valid unk_id (" + unkId + ")");
    }
  }

  /** Loads a SentencePiece {@code .model} file; only BPE models with identity normalization. */
  public static SentencePieceTokenizer load(Path file) throws IOException {
    byte[] data;
    try {
      data = Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      throw new NoSuchFileException(file.toString(), null, "tokenizer model not found");
    }
    try {
      return parse(data, file.toString());
    } catch (com.google.protobuf.InvalidProtocolBufferException e) {
      throw new InputException(file + " is not a SentencePiece model: " + e.getMessage(), e);
    }
  }

  public static SentencePieceTokenizer load(InputStream in, String name) throws IOException {
    return parse(in.readAllBytes(), name);
  }

  private static final class Trainer {
    int modelType = 1;
    boolean byteFallback;
    boolean treatWhitespaceAsSuffix;
    int unkId = 0;
    int bosId = 1;
    int eosId = 2;
  }

  private static final class Normalizer {
    String name = "";
    boolean hasCharsMap;
    boolean addDummyPrefix = true;
    boolean removeExtraWhitespaces = true;
    boolean escapeWhitespaces = true;
  }

  private static SentencePieceTokenizer parse(byte[] data, String where) throws IOException {
    CodedInputStream in = CodedInputStream.newInstance(data);
    List<String> pieces = new ArrayList<>();
    List<Float> scores = new ArrayList<>();
    List<Integer> types = new ArrayList<>();
    Trainer trainer = new Trainer();
    Normalizer norm = new Normalizer();
    while (true) {
      int tag = in.readTag();
      if (tag == 0) {
        break;
      }
      switch (WireFormat.getTagFieldNumber(tag)) {
        case 1: { // SentencePiece
          CodedInputStream p = in.readBytes().newCodedInput();
          String piece = "";
          float score = 0f;
          int type = NORMAL;
          for (int t = p.readTag(); t != 0; t = p.readTag()) {
            switch (WireFormat.getTagFieldNumber(t)) {
              case 1: piece = p.readString(); break;
              case 2: score = p.readFloat(); break;
              case 3: type = p.readEnum(); break;
              default: p.skipField(t);
            }
          }
          pieces.add(piece);
          scores.add(score);
          types.add(type);
          break;
        }
        case 2: { // TrainerSpec
          CodedInputStream p = in.readBytes().newCodedInput();
          for (int t = p.readTag(); t != 0; t = p.readTag()) {
            switch (WireFormat.getTagFieldNumber(t)) {
              case 3: trainer.modelType = p.readEnum(); break;
              case 24: trainer.treatWhitespaceAsSuffix = p.readBool(); break;
              case 35: trainer.byteFallback = p.readBool(); break;
              case 40: trainer.unkId = p.readInt32(); break;
              case 41: trainer.bosId = p.readInt32(); break;
              case 42: trainer.eosId = p.readInt32(); break;
              default: p.skipField(t);
            }
          }
          break;
        }
        case 3: { // NormalizerSpec
          CodedInputStream p = in.readBytes().newCodedInput();
          for (int t = p.readTag(); t != 0; t = p.readTag()) {
            switch (WireFormat.getTagFieldNumber(t)) {
              case 1: norm.name = p.readString(); break;
              case 2: norm.hasCharsMap = !p.readBytes().isEmpty(); break;
              case 3: norm.addDummyPrefix = p.readBool(); break;
              case 4: norm.removeExtraWhitespaces = p.readBool(); break;
              case 5: norm.escapeWhitespaces = p.readBool(); break;
              default: p.skipField(t);
            }
          }
          break;
        }
        default:
          in.skipField(tag);
      }
    }
    if (pieces.isEmpty()) {
      throw new InputException(where + " is not a SentencePiece model (no pieces)");
    }
    if (trainer.modelType != MODEL_BPE) {
      throw new InputException(where + ": only BPE SentencePiece models are supported (model_type "
          + trainer.modelType + ")");
    }
    if (norm.hasCharsMap && !norm.name.equals("identity")) {
      throw new InputException(where + ": normalizer '" + norm.name
          + "' is not supported; LLaMA tokenizers use identity");
    }
    if (trainer.treatWhitespaceAsSuffix) {
      throw new InputException(where + ": treat_whitespace_as_suffix is not supported");
    }
    return new SentencePieceTokenizer(pieces, scores, types, trainer, norm);
  }

  public int vocabSize() {
    return pieces.length;
  }

  public int bosId() {
    return bosId;
  }

  public int eosId() {
    return eosId;
  }

  public int unkId() {
    return unkId;
  }

  public String piece(int id) {
    return pieces[id];
  }

  /** Token ids of the text, without BOS (as SentencePiece's encode). */
  public int[] encode(String text) {
    String normalized = normalize(text);
    if (normalized.isEmpty()) {
      return new int[0];
    }
    List<Integer> ids = new ArrayList<>();
    for (String symbol : bpe(normalized)) {
      Integer id = mergeable.get(symbol);
      if (id != null) {
        ids.add(id);
      } else if (byteFallback) {
        for (byte b : symbol.getBytes(StandardCharsets.UTF_8)) {
          int bid = byteIds[b & 0xff];
          ids.add(bid >= 0 ? bid : unkId);
        }
      } else {
        ids.add(unkId);
      }
    }
    return ids.stream().mapToInt(Integer::intValue).toArray();
  }

  /** Token ids with BOS first, as a LLaMA tokenizer returns them by default. */
  public int[] encodeWithBos(String text) {
    int[] ids = encode(text);
    int[] out = new int[ids.length + 1];
    out[0] = bosId;
    System.arraycopy(ids, 0, out, 1, ids.length);
    return out;
  }

  private String normalize(String text) {
    String s = text;
    if (removeExtraWhitespaces) {
      StringBuilder sb = new StringBuilder(s.length());
      boolean lastSpace = true; // drops leading spaces
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        if (c == ' ') {
          if (!lastSpace) {
            sb.append(c);
          }
          lastSpace = true;
        } else {
          sb.append(c);
          lastSpace = false;
        }
      }
      int end = sb.length();
      while (end > 0 && sb.charAt(end - 1) == ' ') {
        end--;
      }
      s = sb.substring(0, end);
    }
    if (s.isEmpty()) {
      return s;
    }
    if (addDummyPrefix) {
      s = " " + s;
    }
    return escapeWhitespaces ? s.replace(' ', SPACE) : s;
  }

  /** Highest-score pair first (leftmost on ties), as SentencePiece's BPE model encodes. */
  private List<String> bpe(String text) {
    // initial symbols: user-defined pieces as a whole, otherwise one code point each
    List<int[]> spans = new ArrayList<>();
    for (int i = 0; i < text.length(); ) {
      int len = 0;
      for (String u : userDefined) {
        if (text.startsWith(u, i)) {
          len = u.length();
          break;
        }
      }
      if (len == 0) {
        len = Character.charCount(text.codePointAt(i));
      }
      spans.add(new int[] {i, i + len});
      i += len;
    }
    int n = spans.size();
    int[] start = new int[n];
    int[] end = new int[n];
    int[] prev = new int[n];
    int[] next = new int[n];
    for (int i = 0; i < n; i++) {
      start[i] = spans.get(i)[0];
      end[i] = spans.get(i)[1];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    PriorityQueue<Candidate> agenda = new PriorityQueue<>();
    java.util.function.IntConsumer consider = left -> {
      int right = next[left];
      if (left < 0 || right < 0) {
        return;
      }
      Integer id = mergeable.get(text.substring(start[left], end[right]));
      if (id != null) {
        agenda.add(new Candidate(scores[id], left, end[left], end[right]));
      }
    };
    for (int i = 0; i + 1 < n; i++) {
      consider.accept(i);
    }
    boolean[] dead = new boolean[n];
    while (!agenda.isEmpty()) {
      Candidate c = agenda.poll();
      int left = c.left;
      int right = next[left];
      if (dead[left] || right < 0 || end[left] != c.leftEnd || end[right] != c.rightEnd) {
        continue; // one side changed since this pair was queued
      }
      end[left] = end[right];
      dead[right] = true;
      next[left] = next[right];
      if (next[right] >= 0) {
        prev[next[right]] = left;
      }
      if (prev[left] >= 0) {
        consider.accept(prev[left]);
      }
      consider.accept(left);
    }
    List<String> out = new ArrayList<>();
    for (int i = 0; i >= 0 && i < n; i = next[i]) {
      out.add(text.substring(start[i], end[i]));
    }
    return out;
  }

  /** A mergeable pair: higher score first, then the leftmost. */
  private record Candidate(float score, int left, int leftEnd, int rightEnd) implements Comparable<Candidate> {
    @Override
    public int compareTo(Candidate o) {
      return score != o.score ? Float.compare(o.score, score) : Integer.compare(left, o.left);
    }
  }

  /** Text of the ids; control tokens (BOS, EOS, padding) print nothing. */
  public String decode(int[] ids) {
    StringBuilder sb = new StringBuilder();
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    for (int id : ids) {
      if (id < 0 || id >= pieces.length) {
        throw new InputException("token id " + id + " is outside the vocabulary [0, " + pieces.length + ")");
      }
      if (types[id] == BYTE) {
        bytes.write(Integer.parseInt(pieces[id].substring(3, 5), 16));
        continue;
      }
      flushBytes(bytes, sb);
      switch (types[id]) {
        case CONTROL:
          break;
        case UNKNOWN:
          sb.append(" \u2047 ");
          break;
        default:
          sb.append(pieces[id]);
      }
    }
    flushBytes(bytes, sb);
    String s = sb.toString().replace(SPACE, ' ');
    if (addDummyPrefix && s.startsWith(" ")) {
      s = s.substring(1);
    }
    return s;
  }

  private static void flushBytes(ByteArrayOutputStream bytes, StringBuilder sb) {
    if (bytes.size() == 0) {
      return;
    }
    byte[] b = bytes.toByteArray();
    bytes.reset();
    try {
      sb.append(StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(b)));
    } catch (CharacterCodingException e) {
      sb.append(new String(b, StandardCharsets.UTF_8)); // invalid bytes become U+FFFD
    }
  }
}
