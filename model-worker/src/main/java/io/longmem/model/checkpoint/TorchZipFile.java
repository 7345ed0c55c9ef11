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
  /** Most bytes a data.pkl may inflate to, whatever the zip declares: 64 MiB. */
  static final long MAX_PICKLE = 64L << 20;
  /** Bytes of data.pkl allowed per storage entry of the zip (a tensor needs a few hundred)... */
  static final long PICKLE_PER_STORAGE = 64L << 10;
  /** ...on top of this much for the dict and its metadata. */
  static final long PICKLE_BASE = 1L << 20;

  private TorchZipFile() {}

  static Map<String, StoredTensor> open(Path file) throws IOException {
    String where = file.toString();
    Map<String, StoredTensor> out = new LinkedHashMap<>();
    try (ZipFile zip = ZipFile.builder().setPath(file).get();
         FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      ZipArchiveEntry pkl = null;
      long storages = 0;
      for (ZipArchiveEntry e : Collections.list(zip.getEntries())) {
        if (e.getName().endsWith("data.pkl") && (pkl == null || e.getName().length() < pkl.getName().length())) {
          pkl = e;
        }
        if (e.getName().startsWith("data/") || e.getName().contains("/data/")) {
          storages++;
        }
      }
      if (pkl == null) {
        throw new CheckpointException(where + ": no data.pkl inside: not a torch.save zip (legacy pre-1.6 "
            + "checkpoints are not supported; re-save with a current torch)");
      }
      String prefix = pkl.getName().substring(0, pkl.getName().length() - "data.pkl".length());
      byte[] pickle = readPickle(zip, pkl, storages, where);
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
        long numel;
        long start;
        long len;
        long end;
        try {
          numel = 1;
          for (long d : t.shape()) {
            numel = Math.multiplyExact(numel, d);
          }
          len = Math.multiplyExact(numel, (long) type.bytes());
          start = Math.addExact(data.getDataOffset(), Math.multiplyExact(t.offset(), (long) type.bytes()));
          end = Math.multiplyExact(Math.addExact(t.offset(), numel), (long) type.bytes());
        } catch (ArithmeticException x) {
          throw new CheckpointException(where + ": tensor " + name + " of shape " + Arrays.toString(t.shape())
              + " at offset " + t.offset() + " has a size beyond 2^63 bytes");
        }
        if (t.offset() < 0 || end > data.getSize() || start + len > fileSize) {
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

  /**
   * Inflates data.pkl, refusing before it starts one that declares more than the zip's storages
   * can need (and more than {@link #MAX_PICKLE}), and stopping at the declared size: an entry that
   * inflates past it is lying about what it holds (a zip bomb's trick), one that ends short is cut.
   */
  private static byte[] readPickle(ZipFile zip, ZipArchiveEntry pkl, long storages, String where) throws IOException {
    long limit = Math.min(MAX_PICKLE, PICKLE_BASE + storages * PICKLE_PER_STORAGE);
    long declared = pkl.getSize();
    if (declared < 0) {
      throw new CheckpointException(where + ": " + pkl.getName() + " declares no size in the zip directory");
    }
    if (declared > limit) {
      throw new CheckpointException(where + ": " + pkl.getName() + " declares " + declared + " bytes; a state dict of "
          + storages + " storages needs at most " + limit + " (data.pkl is capped at " + MAX_PICKLE + " bytes)");
    }
    byte[] pickle;
    try (InputStream is = zip.getInputStream(pkl)) {
      pickle = is.readNBytes((int) declared + 1);
    }
    if (pickle.length != declared) {
      throw new CheckpointException(where + ": " + pkl.getName() + " declares " + declared + " bytes but inflates to "
          + (pickle.length > declared ? "more" : pickle.length + " bytes") + ": a damaged or forged zip");
    }
    return pickle;
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
