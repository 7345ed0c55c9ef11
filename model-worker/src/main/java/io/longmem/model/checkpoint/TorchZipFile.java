package io.longmem.model.checkpoint;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipFile;

/**
 * Reads a {@code pytorch_model*.bin} written by {@code torch.save}: a zip (ZIP64 above 4 GiB) whose
 * {@code data.pkl} describes the tensors and whose {@code data/N} entries hold the raw storages,
 * stored uncompressed. Storages are memory-mapped straight out of the zip at their data offset.
 */
final class TorchZipFile {
  private TorchZipFile() {}

  static Map<String, StoredTensor> open(Path file) throws IOException {
    String where = file.toString();
    Map<String, StoredTensor> out = new LinkedHashMap<>();
    try (ZipFile zip = ZipFile.builder().setPath(file).get();
         FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      ZipArchiveEntry pkl = null;
      for (ZipArchiveEntry e : Collections.list(zip.getEntries())) {
        if (e.getName().endsWith("data.pkl") && (pkl == null || e.getName().length() < pkl.getName().length())) {
          pkl = e;
        }
      }
      if (pkl == null) {
        throw new CheckpointException(where + ": no data.pkl inside: not a torch.save zip (legacy pre-1.6 "
            + "checkpoints are not supported; re-save with a current torch)");
      }
      String prefix = pkl.getName().substring(0, pkl.getName().length() - "data.pkl".length());
      byte[] pickle;
      try (InputStream is = zip.getInputStream(pkl)) {
        pickle = is.readAllBytes();
      }
      Map<String, TorchPickle.TensorRef> refs = TorchPickle.loadStateDict(pickle, where);
      long fileSize = ch.size();
      for (Map.Entry<String, TorchPickle.TensorRef> e : refs.entrySet()) {
        String name = e.getKey();
        TorchPickle.TensorRef t = e.getValue();
        StorageType type = t.storage().type();
        if (type == null) {
          throw new CheckpointException(where + ": tensor " + name + " has unsupported storage "
              + t.storage().typeName());
        }
        ZipArchiveEntry data = zip.getEntry(prefix + "data/" + t.storage().key());
        if (data == null) {
          throw new CheckpointException(where + ": tensor " + name + " refers to missing storage data/"
              + t.storage().key());
        }
        if (data.getMethod() != ZipArchiveEntry.STORED) {
          throw new CheckpointException(where + ": storage data/" + t.storage().key() + " of " + name
              + " is compressed; torch.save stores storages uncompressed");
        }
        if (!isContiguous(t.shape(), t.stride())) {
          throw new CheckpointException(where + ": tensor " + name + " is not contiguous (stride "
              + Arrays.toString(t.stride()) + " for shape " + Arrays.toString(t.shape()) + ")");
        }
        long numel = 1;
        for (long d : t.shape()) {
          numel *= d;
        }
        long start = data.getDataOffset() + t.offset() * type.bytes();
        long len = numel * type.bytes();
        if (t.offset() < 0 || (t.offset() + numel) * type.bytes() > data.getSize() || start + len > fileSize) {
          throw new CheckpointException(where + ": tensor " + name + " runs past its storage data/"
              + t.storage().key() + ": truncated file?");
        }
        if (len > Integer.MAX_VALUE) {
          throw new CheckpointException(where + ": tensor " + name + " is larger than 2 GiB");
        }
        ByteBuffer mapped = ch.map(FileChannel.MapMode.READ_ONLY, start, len);
        out.put(name, new StoredTensor(name, where, type, t.shape(), mapped));
      }
    } catch (java.util.zip.ZipException e) {
      throw new CheckpointException(where + ": not a readable zip (truncated file?): " + e.getMessage(), e);
    }
    return out;
  }

  private static boolean isContiguous(long[] shape, long[] stride) {
    if (shape.length != stride.length) {
      return false;
    }
    long expected = 1;
    for (int i = shape.length - 1; i >= 0; i--) {
      if (shape[i] != 1 && stride[i] != expected) {
        return false;
      }
      expected *= shape[i];
    }
    return true;
  }
}
