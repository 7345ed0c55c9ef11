package io.longmem.jobs.encode;

import io.longmem.io.InputException;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.lit;

import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The documents of an input, whatever its format, as rows of one schema: {@code id}, {@code text}
 * (null for pre-tokenized documents), {@code token_ids}, {@code bad_utf8} (text files whose bytes
 * were not UTF-8: read with U+FFFD in their place), {@code malformed} (JSON lines that did not
 * parse; their other columns are null) and {@code bad_id} (an id that has no exact string: its
 * bytes are not UTF-8 or its escapes leave a lone surrogate; see {@link DocumentIds}).
 */
public final class Corpus {
  public static final String ID = "id";
  public static final String TEXT = "text";
  public static final String TOKEN_IDS = "token_ids";
  public static final String BAD_UTF8 = "bad_utf8";
  public static final String MALFORMED = "malformed";
  public static final String BAD_ID = "bad_id";

  public static final StructType SCHEMA = new StructType(new StructField[] {
      DataTypes.createStructField(ID, DataTypes.StringType, true),
      DataTypes.createStructField(TEXT, DataTypes.StringType, true),
      DataTypes.createStructField(TOKEN_IDS, DataTypes.createArrayType(DataTypes.LongType), true),
      DataTypes.createStructField(BAD_UTF8, DataTypes.BooleanType, false),
      DataTypes.createStructField(MALFORMED, DataTypes.BooleanType, false),
      DataTypes.createStructField(BAD_ID, DataTypes.BooleanType, false)});

  /** Input formats. */
  public enum Format {
    /** a directory of text files (UTF-8), one document each; the id is the path below the directory */
    TEXT,
    /** JSON Lines: one object per line with an id and text or token_ids */
    JSONL,
    /** Parquet with an id column and a text or token_ids column */
    PARQUET,
    /** decided from the file names */
    AUTO
  }

  /** Where the documents are and how to read them; column names apply to JSONL and Parquet. */
  public record Spec(String path, Format format, String idColumn, String textColumn, String tokenIdsColumn)
      implements Serializable {}

  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(Corpus.class);

  private Corpus() {}

  /**
   * Checks that the input exists and has something to read, and settles AUTO; fails before any work
   * starts otherwise.
   */
  public static Spec resolve(SparkSession spark, Spec spec) throws IOException {
    Configuration conf = spark.sparkContext().hadoopConfiguration();
    org.apache.hadoop.fs.Path path = new org.apache.hadoop.fs.Path(spec.path());
    FileSystem fs = path.getFileSystem(conf);
    if (!fs.exists(path)) {
      throw new InputException("input " + spec.path() + " does not exist");
    }
    List<String> names = new ArrayList<>();
    FileStatus status = fs.getFileStatus(path);
    if (status.isDirectory()) {
      var it = fs.listFiles(path, true);
      while (it.hasNext() && names.size() < 10_000) {
        String name = it.next().getPath().getName();
        if (!name.startsWith(".") && !name.startsWith("_")) {
          names.add(name.toLowerCase(Locale.ROOT));
        }
      }
    } else {
      names.add(path.getName().toLowerCase(Locale.ROOT));
    }
    if (names.isEmpty()) {
      throw new InputException("input " + spec.path() + " holds no files");
    }
    Format format = spec.format();
    if (format == Format.AUTO) {
      if (names.stream().allMatch(n -> n.endsWith(".parquet"))) {
        format = Format.PARQUET;
      } else if (names.stream().allMatch(n -> n.endsWith(".jsonl") || n.endsWith(".json"))) {
        format = Format.JSONL;
      } else if (status.isDirectory()) {
        format = Format.TEXT;
      } else {
        throw new InputException("input " + spec.path() + ": cannot tell its format from its name; "
            + "pass --format text|jsonl|parquet (text reads a directory of files, one document each)");
      }
    }
    if (format == Format.TEXT && !status.isDirectory()) {
      throw new InputException("--format text reads a directory of text files (one document each); "
          + spec.path() + " is a file");
    }
    String qualified = fs.makeQualified(path).toString();
    return new Spec(qualified, format, spec.idColumn(), spec.textColumn(), spec.tokenIdsColumn());
  }

  /**
   * Counts (and logs) the files of a local text input whose names are not exact strings: Hadoop's
   * listing drops them without a word (the decoded name no longer opens the file), so they are
   * counted here as skipped documents with undecodable ids. Other inputs: 0 (their ids are
   * checked row by row).
   */
  public static long undecodableNames(Spec spec) throws IOException {
    if (spec.format() != Format.TEXT || !spec.path().startsWith("file:")) {
      return 0;
    }
    java.nio.file.Path root = java.nio.file.Path.of(java.net.URI.create(spec.path()));
    long bad = 0;
    try (var files = java.nio.file.Files.walk(root)) {
      for (java.nio.file.Path p : (Iterable<java.nio.file.Path>) files::iterator) {
        String name = root.relativize(p).toString();
        boolean hidden = p.getFileName().toString().startsWith(".") || p.getFileName().toString().startsWith("_");
        if (!hidden && java.nio.file.Files.isRegularFile(p) && !DocumentIds.isExactName(name)) {
          bad++;
          LOG.warn("input {}: file name '{}' is not an exact string (undecodable bytes): skipped", spec.path(), name);
        }
      }
    }
    return bad;
  }

  /** The documents of a resolved input, in the schema above. */
  public static Dataset<Row> read(SparkSession spark, Spec spec) {
    switch (spec.format()) {
      case TEXT:
        return textFiles(spark, spec.path());
      case JSONL:
        return jsonLines(spark, spec);
      case PARQUET:
        return parquet(spark, spec);
      default:
        throw new InputException("unresolved input format " + spec.format());
    }
  }

  private static Dataset<Row> textFiles(SparkSession spark, String root) {
    spark.sparkContext().hadoopConfiguration().set("mapreduce.input.fileinputformat.input.dir.recursive", "true");
    String prefix = root.endsWith("/") ? root : root + "/";
    JavaRDD<Row> rows = spark.sparkContext().binaryFiles(root, spark.sparkContext().defaultMinPartitions())
        .toJavaRDD().map(file -> {
          String path = file._1();
          String id = path.startsWith(prefix) ? path.substring(prefix.length()) : path;
          if (!DocumentIds.isExactName(id)) {
            // the name's bytes did not decode: it cannot be an id, nor be opened again by this name
            return RowFactory.create(id, null, null, false, false, true);
          }
          byte[] bytes = file._2().toArray();
          String text;
          boolean bad = false;
          try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
          } catch (CharacterCodingException e) {
            text = new String(bytes, StandardCharsets.UTF_8); // U+FFFD for each undecodable sequence
            bad = true;
          }
          return RowFactory.create(id, text, null, bad, false, false);
        });
    return spark.createDataFrame(rows, SCHEMA);
  }

  /**
   * JSON Lines, parsed by Spark's JSON parser line by line ({@code from_json} over the text lines,
   * so that each line's raw bytes are still there to tell whether its id decodes exactly).
   */
  private static Dataset<Row> jsonLines(SparkSession spark, Spec spec) {
    String corrupt = "_corrupt_record";
    StructType schema = new StructType()
        .add(spec.idColumn(), DataTypes.StringType) // numbers are read as their text
        .add(spec.textColumn(), DataTypes.StringType)
        .add(spec.tokenIdsColumn(), DataTypes.createArrayType(DataTypes.LongType))
        .add(corrupt, DataTypes.StringType);
    String idField = spec.idColumn();
    UserDefinedFunction exactId = functions.udf(
        (UDF1<byte[], Boolean>) line -> DocumentIds.isExactJsonId(line, idField), DataTypes.BooleanType);
    Dataset<Row> raw = spark.read().text(spec.path())
        .filter(functions.length(functions.trim(col("value"))).gt(0)) // blank lines are no records
        .select(functions.from_json(col("value"), schema,
                java.util.Map.of("mode", "PERMISSIVE", "columnNameOfCorruptRecord", corrupt)).as("j"),
            exactId.apply(col("value").cast(DataTypes.BinaryType)).as("exact_id"));
    Column bad = col("j").isNull().or(col("j." + corrupt).isNotNull()); // null: a line that is no JSON object
    return raw.select(
        functions.when(bad, lit(null)).otherwise(col("j." + spec.idColumn())).as(ID),
        functions.when(bad, lit(null)).otherwise(col("j." + spec.textColumn())).as(TEXT),
        functions.when(bad, lit(null)).otherwise(col("j." + spec.tokenIdsColumn())).as(TOKEN_IDS),
        lit(false).as(BAD_UTF8), bad.as(MALFORMED), bad.or(col("exact_id")).equalTo(lit(false)).as(BAD_ID));
  }

  private static Dataset<Row> parquet(SparkSession spark, Spec spec) {
    Dataset<Row> raw = spark.read().parquet(spec.path());
    List<String> columns = Arrays.asList(raw.columns());
    if (!columns.contains(spec.idColumn())) {
      throw new InputException("input " + spec.path() + " has no id column '" + spec.idColumn()
          + "' (columns: " + columns + "; choose one with --id-column)");
    }
    boolean hasText = columns.contains(spec.textColumn());
    boolean hasIds = columns.contains(spec.tokenIdsColumn());
    if (!hasText && !hasIds) {
      throw new InputException("input " + spec.path() + " has neither a text column '" + spec.textColumn()
          + "' nor a token ids column '" + spec.tokenIdsColumn() + "' (columns: " + columns
          + "; choose with --text-column / --token-ids-column)");
    }
    DataType idType = raw.schema().apply(spec.idColumn()).dataType();
    Column badId = lit(false);
    if (idType.equals(DataTypes.StringType) || idType.equals(DataTypes.BinaryType)) {
      // a binary (or unchecked string) column may hold any bytes; cast to string they would decode leniently
      UserDefinedFunction exact = functions.udf((UDF1<byte[], Boolean>) DocumentIds::isExactBytes, DataTypes.BooleanType);
      badId = functions.not(exact.apply(col(spec.idColumn()).cast(DataTypes.BinaryType)));
    }
    return raw.select(col(spec.idColumn()).cast(DataTypes.StringType).as(ID),
        hasText ? col(spec.textColumn()).cast(DataTypes.StringType).as(TEXT) : lit(null).cast(DataTypes.StringType).as(TEXT),
        hasIds ? col(spec.tokenIdsColumn()).cast(DataTypes.createArrayType(DataTypes.LongType)).as(TOKEN_IDS)
            : lit(null).cast(DataTypes.createArrayType(DataTypes.LongType)).as(TOKEN_IDS),
        lit(false).as(BAD_UTF8), lit(false).as(MALFORMED), badId.as(BAD_ID));
  }
}
