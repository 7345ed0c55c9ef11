package io.longmem.model.checkpoint;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A restricted unpickler for the {@code data.pkl} that {@code torch.save} writes for a state dict.
 *
 * <p>It implements only the pickle opcodes such a file uses and resolves only an allow-list of
 * globals (the tensor rebuild functions, storage types, {@code OrderedDict}); anything else is
 * refused with its name, so a malicious checkpoint cannot make it do more than build tensor
 * descriptions. (Pyrolite, the Java unpickler on Maven Central, cannot restrict its globals from
 * outside its package, hence this small one.)
 */
final class TorchPickle {

  /** A storage reference: {@code ('storage', type, key, location, numel)}. */
  record StorageRef(StorageType type, String typeName, String key, long numel) {}

  /** A tensor view on a storage, as {@code torch._utils._rebuild_tensor_v2} describes it. */
  record TensorRef(StorageRef storage, long offset, long[] shape, long[] stride) {}

  private record Global(String module, String name) {}

  private static final Set<String> ALLOWED = Set.of(
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.DoubleStorage",
      "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
      "torch.ByteStorage", "torch.BoolStorage");


  private final DataInputStream in;
  private final String where;
  private final List<Object> stack = new ArrayList<>();
  private final List<Integer> marks = new ArrayList<>();
  private final Map<Long, Object> memo = new HashMap<>();

  private TorchPickle(byte[] data, String where) {
    this.in = new DataInputStream(new ByteArrayInputStream(data));
    this.where = where;
  }

  /** Unpickles a state dict into tensor name to tensor reference. */
  static Map<String, TensorRef> loadStateDict(byte[] data, String where) throws IOException {
    Object root = new TorchPickle(data, where).run();
    if (!(root instanceof Map)) {
      throw new CheckpointException(where + ": data.pkl does not hold a dict of tensors");
    }
    Map<String, TensorRef> out = new LinkedHashMap<>();
    for (Map.Entry<?, ?> e : ((Map<?, ?>) root).entrySet()) {
      if (e.getKey() instanceof String && e.getValue() instanceof TensorRef) {
        out.put((String) e.getKey(), (TensorRef) e.getValue());
      }
    }
    return out;
  }

  private Object run() throws IOException {
    try {
      while (true) {
        int op = in.readUnsignedByte();
        switch (op) {
          case 0x80: in.readUnsignedByte(); break; // PROTO
          case 0x95: in.readLong(); break; // FRAME
          case '.': return pop(); // STOP
          case '(': marks.add(stack.size()); break; // MARK
          case '}': push(new LinkedHashMap<>()); break;
          case ']': push(new ArrayList<>()); break;
          case ')': push(new Object[0]); break;
          case 't': push(popMark().toArray()); break;
          case 0x85: push(new Object[] {pop()}); break;
          case 0x86: { Object b = pop(); Object a = pop(); push(new Object[] {a, b}); break; }
          case 0x87: { Object c = pop(); Object b = pop(); Object a = pop(); push(new Object[] {a, b, c}); break; }
          case 'q': memo.put((long) in.readUnsignedByte(), peek()); break; // BINPUT
          case 'r': memo.put(u32(), peek()); break; // LONG_BINPUT
          case 0x94: memo.put((long) memo.size(), peek()); break; // MEMOIZE
          case 'h': push(memoGet(in.readUnsignedByte())); break; // BINGET
          case 'j': push(memoGet(u32())); break; // LONG_BINGET
          case 'X': push(string(u32())); break; // BINUNICODE
          case 0x8c: push(string(in.readUnsignedByte())); break; // SHORT_BINUNICODE
          case 0x8d: push(string(Long.reverseBytes(in.readLong()))); break; // BINUNICODE8
          case 'T': push(string(u32())); break; // BINSTRING
          case 'U': push(string(in.readUnsignedByte())); break; // SHORT_BINSTRING
          case 'B': push(bytes(u32())); break; // BINBYTES
          case 'C': push(bytes(in.readUnsignedByte())); break; // SHORT_BINBYTES
          case 'c': push(global(line(), line())); break; // GLOBAL
          case 0x93: { String name = (String) pop(); String module = (String) pop(); push(global(module, name)); break; }
          case 'J': push((long) Integer.reverseBytes(in.readInt())); break; // BININT
          case 'K': push((long) in.readUnsignedByte()); break; // BININT1
          case 'M': push((long) (in.readUnsignedByte() | (in.readUnsignedByte() << 8))); break; // BININT2
          case 0x8a: push(long1(in.readUnsignedByte())); break; // LONG1
          case 'N': push(null); break;
          case 0x88: push(Boolean.TRUE); break;
          case 0x89: push(Boolean.FALSE); break;
          case 'G': push(in.readDouble()); break; // BINFLOAT (big-endian)
          case 'R': { Object args = pop(); Object fn = pop(); push(call(fn, (Object[]) args)); break; } // REDUCE
          case 0x81: { Object args = pop(); Object cls = pop(); push(call(cls, (Object[]) args)); break; } // NEWOBJ
          case 'b': pop(); break; // BUILD: state of an OrderedDict (_metadata); not needed
          case 's': { Object v = pop(); Object k = pop(); asMap(peek()).put(k, v); break; } // SETITEM
          case 'u': { List<Object> kv = popMark(); Map<Object, Object> m = asMap(peek());
            for (int i = 0; i + 1 < kv.size(); i += 2) {
              m.put(kv.get(i), kv.get(i + 1));
            }
            break; }
          case 'a': { Object v = pop(); asList(peek()).add(v); break; } // APPEND
          case 'e': { List<Object> vs = popMark(); asList(peek()).addAll(vs); break; } // APPENDS
          case 'Q': push(persistentLoad(pop())); break; // BINPERSID
          case '0': pop(); break; // POP
          case '1': popMark(); break; // POP_MARK
          case '2': push(peek()); break; // DUP
          default:
            throw new CheckpointException(where + ": pickle opcode 0x" + Integer.toHexString(op)
                + " is not allowed in a torch state dict");
        }
      }
    } catch (EOFException e) {
      throw new CheckpointException(where + ": data.pkl ends before STOP (truncated file?)");
    } catch (ClassCastException | IndexOutOfBoundsException e) {
      throw new CheckpointException(where + ": data.pkl is not a torch state dict (" + e.getMessage() + ")");
    }
  }

  private Object global(String module, String name) {
    String full = module + "." + name;
    if (!ALLOWED.contains(full)) {
      throw new CheckpointException(where + ": pickle global " + full
          + " is not allowed (only tensors are read from .bin checkpoints)");
    }
    return new Global(module, name);
  }

  private Object call(Object fn, Object[] args) {
    if (!(fn instanceof Global)) {
      throw new CheckpointException(where + ": pickle calls a non-global " + fn);
    }
    Global g = (Global) fn;
    switch (g.module() + "." + g.name()) {
      case "collections.OrderedDict":
        return new LinkedHashMap<>();
      case "torch._utils._rebuild_parameter":
        return args[0];
      case "torch._utils._rebuild_tensor_v2": {
        StorageRef storage = (StorageRef) args[0];
        return new TensorRef(storage, (Long) args[1], longs((Object[]) args[2]), longs((Object[]) args[3]));
      }
      default:
        throw new CheckpointException(where + ": pickle calls " + g.module() + "." + g.name()
            + ", which is not a tensor rebuild function");
    }
  }

  private Object persistentLoad(Object pid) {
    Object[] t = (Object[]) pid;
    if (t.length < 5 || !"storage".equals(t[0]) || !(t[1] instanceof Global)) {
      throw new CheckpointException(where + ": unexpected persistent id in data.pkl");
    }
    String typeName = ((Global) t[1]).name();
    return new StorageRef(StorageType.fromTorchStorage(typeName), typeName, (String) t[2], (Long) t[4]);
  }

  private static long[] longs(Object[] a) {
    long[] r = new long[a.length];
    for (int i = 0; i < a.length; i++) {
      r[i] = (Long) a[i];
    }
    return r;
  }

  @SuppressWarnings("unchecked")
  private static Map<Object, Object> asMap(Object o) {
    return (Map<Object, Object>) o;
  }

  @SuppressWarnings("unchecked")
  private static List<Object> asList(Object o) {
    return (List<Object>) o;
  }

  private Object memoGet(long i) {
    if (!memo.containsKey(i)) {
      throw new CheckpointException(where + ": pickle refers to missing memo entry " + i);
    }
    return memo.get(i);
  }

  private void push(Object o) {
    stack.add(o);
  }

  private Object pop() {
    return stack.remove(stack.size() - 1);
  }

  private Object peek() {
    return stack.get(stack.size() - 1);
  }

  private List<Object> popMark() {
    int m = marks.remove(marks.size() - 1);
    List<Object> items = new ArrayList<>(stack.subList(m, stack.size()));
    stack.subList(m, stack.size()).clear();
    return items;
  }

  private long u32() throws IOException {
    return Integer.toUnsignedLong(Integer.reverseBytes(in.readInt()));
  }

  private String string(long n) throws IOException {
    return new String(bytes(n), StandardCharsets.UTF_8);
  }

  private byte[] bytes(long n) throws IOException {
    if (n < 0 || n > in.available()) {
      throw new CheckpointException(where + ": string of " + n + " bytes runs past the end of data.pkl");
    }
    byte[] b = new byte[(int) n];
    in.readFully(b);
    return b;
  }

  private String line() throws IOException {
    StringBuilder sb = new StringBuilder();
    for (int c = in.readUnsignedByte(); c != '\n'; c = in.readUnsignedByte()) {
      sb.append((char) c);
    }
    return sb.toString();
  }

  private Long long1(int n) throws IOException {
    byte[] le = bytes(n);
    byte[] be = new byte[n];
    for (int i = 0; i < n; i++) {
      be[i] = le[n - 1 - i];
    }
    return n == 0 ? 0L : new BigInteger(be).longValueExact();
  }
}
