package io.longmem.memory.shard;

import io.longmem.memory.api.MemoryBlock;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The Arrow schema of one layer file of a shard: a row per token with its document, its position
 * in the document, and its key and value for all heads as a fixed-size list of heads * head_dim
 * numbers (head-major). Any Arrow reader (pyarrow included) reads it without longmem.
 */
final class ArrowSchemas {
  static final String DOCUMENT = "document";
  static final String POSITION = "position";
  static final String KEY = "key";
  static final String VALUE = "value";

  private ArrowSchemas() {}

  static Schema layer(ShardLayout layout, int layer) {
    ArrowType element = new ArrowType.FloatingPoint(layout.storage() == MemoryBlock.Storage.FLOAT16
        ? FloatingPointPrecision.HALF : FloatingPointPrecision.SINGLE);
    return new Schema(List.of(
        new Field(DOCUMENT, FieldType.notNullable(new ArrowType.Utf8()), null),
        new Field(POSITION, FieldType.notNullable(new ArrowType.Int(32, true)), null),
        vectorField(KEY, layout.width(), element),
        vectorField(VALUE, layout.width(), element)),
        Map.of("longmem.format_version", Integer.toString(Manifest.FORMAT_VERSION),
            "longmem.layer", Integer.toString(layer),
            "longmem.heads", Integer.toString(layout.heads()),
            "longmem.head_dim", Integer.toString(layout.headDim())));
  }

  private static Field vectorField(String name, int width, ArrowType element) {
    return new Field(name, FieldType.notNullable(new ArrowType.FixedSizeList(width)),
        List.of(new Field("item", FieldType.notNullable(element), null)));
  }
}
