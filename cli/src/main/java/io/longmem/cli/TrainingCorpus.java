package io.longmem.cli;

import io.longmem.io.InputException;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import io.longmem.train.Doc;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.NoSuchElementException;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * Training documents from a corpus read by the encode job's reader ({@code jobs} Corpus, on a
 * local Spark), as BOS + tokens + EOS, streamed and read again from the start at its end (epochs).
 */
final class TrainingCorpus implements AutoCloseable {
  private final SparkSession spark;
  private final io.longmem.jobs.encode.Corpus.Spec spec;
  private final SentencePieceTokenizer tok;

  TrainingCorpus(String path, String format, SentencePieceTokenizer tok) throws java.io.IOException {
    io.longmem.jobs.encode.Corpus.Format f;
    try {
      f = io.longmem.jobs.encode.Corpus.Format.valueOf(format.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new InputException("--format must be text, jsonl, parquet or auto, got " + format);
    }
    this.tok = tok;
    this.spark = SparkSession.builder().master("local[1]").appName("longmem train")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate();
    try {
      this.spec = io.longmem.jobs.encode.Corpus.resolve(spark, new io.longmem.jobs.encode.Corpus.Spec(path, f, "id",
          "text", "token_ids"));
    } catch (RuntimeException | java.io.IOException e) {
      spark.stop();
      throw e;
    }
  }

  /** An endless iterator over the corpus's documents; fails if a whole pass yields none. */
  Iterator<Doc> documents() {
    return new Iterator<>() {
      private Iterator<Row> rows = pass();
      private boolean sawOne;

      @Override
      public boolean hasNext() {
        return true;
      }

      @Override
      public Doc next() {
        while (true) {
          if (!rows.hasNext()) {
            if (!sawOne) {
              throw new InputException("--data " + spec.path() + " has no readable documents");
            }
            rows = pass();
            sawOne = false;
          }
          Doc d = doc(rows.next());
          if (d != null) {
            sawOne = true;
            return d;
          }
        }
      }
    };
  }

  private Iterator<Row> pass() {
    return io.longmem.jobs.encode.Corpus.read(spark, spec)
        .select(io.longmem.jobs.encode.Corpus.TEXT, io.longmem.jobs.encode.Corpus.TOKEN_IDS,
            io.longmem.jobs.encode.Corpus.BAD_UTF8, io.longmem.jobs.encode.Corpus.MALFORMED)
        .toLocalIterator();
  }

  /** A row as a document, or null for a row the reader marked bad (or an empty one). */
  private Doc doc(Row r) {
    if (r.getBoolean(2) || r.getBoolean(3)) {
      return null;
    }
    int[] body;
    if (!r.isNullAt(0)) {
      body = tok.encode(r.getString(0));
    } else if (!r.isNullAt(1)) {
      List<Long> ids = r.getList(1);
      body = ids.stream().mapToInt(Long::intValue).toArray();
    } else {
      return null;
    }
    if (body.length == 0) {
      return null;
    }
    int[] t = new int[body.length + 2];
    t[0] = tok.bosId();
    System.arraycopy(body, 0, t, 1, body.length);
    t[t.length - 1] = tok.eosId();
    return Doc.text(t);
  }

  @Override
  public void close() {
    spark.stop();
  }
}
