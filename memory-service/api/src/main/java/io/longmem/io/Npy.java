package io.longmem.io;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * NumPy {@code .npy} files (format 1.0/2.0, little-endian float32, C order): what the CLI writes
 * and what the conformance fixtures hold. Files are written to a temporary name and renamed.
 */
public final class Npy {
  private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
  private static final Pattern DESCR = Pattern.compile("'descr':\\s*'([^']+)'");
  private static final Pattern ORDER = Pattern.compile("'fortran_order':\\s*(True|False)");
  private static final Pattern SHAPE = Pattern.compile("'shape':\\s*\\(([^)]*)\\)");

  /** A float32 array with its shape. */
  public record Array(long[] shape, float[] data) {
    public int rows() {
      return (int) shape[0];
    }

    public int cols() {
      return (int) (data.length / Math.max(1, shape[0]));
    }

    public float get(int row, int col) {
      return data[row * cols() + col];
    }
  }

  private Npy() {}

  public static Array read(Path file) throws IOException {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      ByteBuffer all = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()).order(ByteOrder.LITTLE_ENDIAN);
      byte[] magic = new byte[6];
      all.get(magic);
      if (!Arrays.equals(magic, MAGIC)) {
        throw new IOException(file + " is not a .npy file");
      }
      int major = all.get() & 0xff;
      all.get();
      int headerLen = major == 1 ? all.getShort() & 0xffff : all.getInt();
      byte[] hb = new byte[headerLen];
      all.get(hb);
      String header = new String(hb, StandardCharsets.ISO_8859_1);
      Matcher d = DESCR.matcher(header);
      Matcher o = ORDER.matcher(header);
      Matcher s = SHAPE.matcher(header);
      if (!d.find() || !o.find() || !s.find()) {
        throw new IOException(file + ": unreadable .npy header " + header);
      }
      if (o.group(1).equals("True")) {
        throw new IOException(file + ": Fortran-order arrays are not supported");
      }
      String[] dims = s.group(1).split(",");
      long[] shape = Arrays.stream(dims).map(String::trim).filter(x -> !x.isEmpty()).mapToLong(Long::parseLong).toArray();
      long n = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
      float[] data = new float[Math.toIntExact(n)];
      String descr = d.group(1);
      long need = n * ("<f8".equals(descr) || "<i8".equals(descr) ? 8 : 4);
      if (all.remaining() < need) {
        throw new IOException(file + ": truncated: needs " + need + " data bytes, has " + all.remaining());
      }
      for (int i = 0; i < data.length; i++) {
        switch (descr) {
          case "<f4": data[i] = all.getFloat(); break;
          case "<f8": data[i] = (float) all.getDouble(); break;
          case "<i4": data[i] = all.getInt(); break;
          case "<i8": data[i] = all.getLong(); break;
          default: throw new IOException(file + ": dtype " + descr + " is not supported");
        }
      }
      return new Array(shape, data);
    }
  }

  /** Writes a float32 array atomically (temporary file, then rename). */
  public static void write(Path file, long[] shape, float[] data) throws IOException {
    long n = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
    if (n != data.length) {
      throw new InputException("shape " + Arrays.toString(shape) + " does not match " + data.length + " values");
    }
    write(file, shape, "<f4", out -> {
      ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
      for (float f : data) {
        if (!buf.hasRemaining()) {
          out.write(buf.array(), 0, buf.position());
          buf.clear();
        }
        buf.putFloat(f);
      }
      out.write(buf.array(), 0, buf.position());
    });
  }

  /** Writes the little-endian payload of an array of the given numpy dtype. */
  public interface Payload {
    void writeTo(OutputStream out) throws IOException;
  }

  /**
   * Writes a .npy file whose data the payload streams (for arrays too large for one Java array),
   * atomically: temporary file, then rename.
   */
  public static void write(Path file, long[] shape, String descr, Payload payload) throws IOException {
    String dims = Arrays.stream(shape).mapToObj(Long::toString).collect(java.util.stream.Collectors.joining(", "))
        + (shape.length == 1 ? "," : "");
    String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    int total = MAGIC.length + 4 + dict.length() + 1;
    int pad = (64 - total % 64) % 64;
    String header = dict + " ".repeat(pad) + "\n";
    AtomicFiles.write(file, tmp -> {
      try (OutputStream out = new java.io.BufferedOutputStream(Files.newOutputStream(tmp), 1 << 16)) {
        out.write(MAGIC);
        out.write(new byte[] {1, 0, (byte) (header.length() & 0xff), (byte) (header.length() >>> 8)});
        out.write(header.getBytes(StandardCharsets.ISO_8859_1));
        payload.writeTo(out);
      }
    });
  }
}
