package io.longmem.model.checkpoint;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
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


  /**
   * Most objects the machine may hold at once on its stack, marks and memo together, and most it
   * may create in all: a state dict needs about ten per tensor, so this admits some 200,000
   * tensors while a hostile data.pkl cannot fill the heap with empty lists.
   */
  static final int MAX_OBJECTS = 1 << 21;

  private final DataInputStream in;
  private long created;
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
    Object root;
    try {
      root = new TorchPickle(data, where).run();
    } catch (StackOverflowError e) { // a backstop: nothing here recurses over what the pickle built
      throw new CheckpointException(where + ": data.pkl nests objects too deeply for a torch state dict");
    }
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
          case '(': count(1); marks.add(stack.size()); break; // MARK
          case '}': push(new LinkedHashMap<>()); break;
          case ']': push(new ArrayList<>()); break;
          case ')': push(new Object[0]); break;
          case 't': push(popMark().toArray()); break;
          case 0x85: push(new Object[] {pop()}); break;
          case 0x86: { Object b = pop(); Object a = pop(); push(new Object[] {a, b}); break; }
          case 0x87: { Object c = pop(); Object b = pop(); Object a = pop(); push(new Object[] {a, b, c}); break; }
          case 'q': count(1); memo.put((long) in.readUnsignedByte(), peek()); break; // BINPUT
          case 'r': count(1); memo.put(u32(), peek()); break; // LONG_BINPUT
          case 0x94: count(1); memo.put((long) memo.size(), peek()); break; // MEMOIZE
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
          case 'R': { Object args = pop(); Object fn = pop(); push(call(fn, tuple(args, "call arguments"))); break; } // REDUCE
          case 0x81: { Object args = pop(); Object cls = pop(); push(call(cls, tuple(args, "call arguments"))); break; } // NEWOBJ
          case 'b': pop(); break; // BUILD: state of an OrderedDict (_metadata); not needed
          case 's': { Object v = pop(); Object k = pop(); asMap(peek()).put(key(k), v); break; } // SETITEM
          case 'u': { List<Object> kv = popMark(); Map<Object, Object> m = asMap(peek());
            for (int i = 0; i + 1 < kv.size(); i += 2) {
              m.put(key(kv.get(i)), kv.get(i + 1));
            }
            break; }
          case 'a': { Object v = pop(); count(1); asList(peek()).add(v); break; } // APPEND
          case 'e': { List<Object> vs = popMark(); count(vs.size()); asList(peek()).addAll(vs); break; } // APPENDS
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
    } catch (ClassCastException | IndexOutOfBoundsException | ArithmeticException e) {
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
      throw new CheckpointException(where + ": pickle calls a non-global (" + typeName(fn) + ")");
    }
    Global g = (Global) fn;
    switch (g.module() + "." + g.name()) {
      case "collections.OrderedDict":
        return new LinkedHashMap<>();
      case "torch._utils._rebuild_parameter":
        return arg(args, 0, TensorRef.class, "_rebuild_parameter", "tensor");
      case "torch._utils._rebuild_tensor_v2": {
        String f = "_rebuild_tensor_v2";
        StorageRef storage = arg(args, 0, StorageRef.class, f, "storage");
        long offset = arg(args, 1, Long.class, f, "storage offset");
        long[] shape = longs(arg(args, 2, Object[].class, f, "size"), f, "size");
        long[] stride = longs(arg(args, 3, Object[].class, f, "stride"), f, "stride");
        if (offset < 0) {
          throw new CheckpointException(where + ": " + f + " has a negative storage offset " + offset);
        }
        if (Arrays.stream(shape).anyMatch(d -> d < 0) || Arrays.stream(stride).anyMatch(d -> d < 0)) {
          throw new CheckpointException(where + ": " + f + " has a negative size or stride: size "
              + Arrays.toString(shape) + ", stride " + Arrays.toString(stride));
        }
        return new TensorRef(storage, offset, shape, stride);
      }
      default:
        throw new CheckpointException(where + ": pickle calls " + g.module() + "." + g.name()
            + ", which is not a tensor rebuild function");
    }
  }

  private Object persistentLoad(Object pid) {
    if (!(pid instanceof Object[]) || ((Object[]) pid).length < 5 || !"storage".equals(((Object[]) pid)[0])
        || !(((Object[]) pid)[1] instanceof Global)) {
      throw new CheckpointException(where + ": unexpected persistent id in data.pkl (" + typeName(pid) + ")");
    }
    Object[] t = (Object[]) pid;
    String typeName = ((Global) t[1]).name();
    String key = arg(t, 2, String.class, "storage", "key");
    long numel = arg(t, 4, Long.class, "storage", "numel");
    if (numel < 0) {
      throw new CheckpointException(where + ": storage " + key + " has a negative size " + numel);
    }
    return new StorageRef(StorageType.fromTorchStorage(typeName), typeName, key, numel);
  }

  /** Argument i of a call as the type it must have; a None or a wrong type is named, not an NPE. */
  private <T> T arg(Object[] args, int i, Class<T> type, String fn, String what) {
    if (i >= args.length) {
      throw new CheckpointException(where + ": " + fn + " gets " + args.length + " arguments, lacks its " + what);
    }
    Object a = args[i];
    if (!type.isInstance(a)) {
      throw new CheckpointException(where + ": " + fn + " argument " + i + " (" + what + ") is " + typeName(a)
          + ", expected " + type.getSimpleName());
    }
    return type.cast(a);
  }

  private Object[] tuple(Object o, String what) {
    if (!(o instanceof Object[])) {
      throw new CheckpointException(where + ": pickle " + what + " are " + typeName(o) + ", not a tuple");
    }
    return (Object[]) o;
  }

  private long[] longs(Object[] a, String fn, String what) {
    long[] r = new long[a.length];
    for (int i = 0; i < a.length; i++) {
      if (!(a[i] instanceof Long)) {
        throw new CheckpointException(where + ": " + fn + " " + what + " holds " + typeName(a[i]) + ", not an int");
      }
      r[i] = (Long) a[i];
    }
    return r;
  }

  /**
   * Dict keys must be strings (a state dict's names, its _metadata's module paths) or ints: a
   * list as a key would be hashed recursively, and a deep one overflows the Java stack.
   */
  private Object key(Object k) {
    if (!(k instanceof String) && !(k instanceof Long)) {
      throw new CheckpointException(where + ": data.pkl has a dict key of type " + typeName(k)
          + "; a torch state dict is keyed by names");
    }
    return k;
  }

  /** What a pickled value is, without printing it (it may be huge or nested without end). */
  private static String typeName(Object o) {
    if (o == null) {
      return "None";
    }
    if (o instanceof Global) {
      return "global " + ((Global) o).module() + "." + ((Global) o).name();
    }
    return o instanceof Object[] ? "a tuple" : o instanceof List ? "a list" : o instanceof Map ? "a dict"
        : o instanceof TensorRef ? "a tensor" : o instanceof StorageRef ? "a storage" : o.getClass().getSimpleName();
  }

  @SuppressWarnings("unchecked")
  private Map<Object, Object> asMap(Object o) {
    if (!(o instanceof Map)) {
      throw new CheckpointException(where + ": data.pkl sets an item on " + typeName(o) + ", not a dict");
    }
    return (Map<Object, Object>) o;
  }

  @SuppressWarnings("unchecked")
  private List<Object> asList(Object o) {
    if (!(o instanceof List)) {
      throw new CheckpointException(where + ": data.pkl appends to " + typeName(o) + ", not a list");
    }
    return (List<Object>) o;
  }

  /** Counts what the machine creates or holds, so that no data.pkl can grow it without bound. */
  private void count(long n) {
    created += n;
    if (created > MAX_OBJECTS || stack.size() + marks.size() + memo.size() > MAX_OBJECTS) {
      throw new CheckpointException(where + ": data.pkl builds more than " + MAX_OBJECTS
          + " objects; a torch state dict needs about ten per tensor");
    }
  }

  private Object memoGet(long i) {
    if (!memo.containsKey(i)) {
      throw new CheckpointException(where + ": pickle refers to missing memo entry " + i);
    }
    return memo.get(i);
  }

  private void push(Object o) {
    count(1);
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
