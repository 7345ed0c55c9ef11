package io.longmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.longmem.Fixtures;
import io.longmem.io.Json;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.MemDType;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A worker whose memory service dies mid-generation: the user gets the one-line error (and log
 * lines), never a gRPC stack trace (a status's toString carries its cause's whole trace).
 */
class MemoryServiceDiesTest {
  /**
   * A TCP relay to a real node that dies like a killed service once the worker has sent it
   * {@code limit} bytes: every connection is cut and the port refuses new ones.
   */
  static final class DyingRelay implements AutoCloseable {
    private final ServerSocket listen;
    private final List<Socket> open = new ArrayList<>();
    private final AtomicLong sent = new AtomicLong();
    private final long limit;
    private final int target;

    DyingRelay(int target, long limit) throws IOException {
      this.target = target;
      this.limit = limit;
      this.listen = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
      Thread t = new Thread(this::accept, "dying-relay");
      t.setDaemon(true);
      t.start();
    }

    int port() {
      return listen.getLocalPort();
    }

    boolean died() {
      return listen.isClosed();
    }

    private void accept() {
      try {
        while (true) {
          Socket c = listen.accept();
          Socket s = new Socket(InetAddress.getLoopbackAddress(), target);
          synchronized (open) {
            open.add(c);
            open.add(s);
          }
          pump(c.getInputStream(), s.getOutputStream(), true);
          pump(s.getInputStream(), c.getOutputStream(), false);
        }
      } catch (IOException e) {
        // closed: the service is dead
      }
    }

    private void pump(InputStream in, OutputStream out, boolean counted) {
      Thread t = new Thread(() -> {
        byte[] b = new byte[8192];
        try {
          for (int n; (n = in.read(b)) >= 0; ) {
            out.write(b, 0, n);
            if (counted && sent.addAndGet(n) > limit) {
              close();
            }
          }
        } catch (IOException e) {
          // cut
        }
      }, "dying-relay-pump");
      t.setDaemon(true);
      t.start();
    }

    @Override
    public void close() {
      try {
        listen.close();
      } catch (IOException ignored) {
        // already closed
      }
      synchronized (open) {
        for (Socket s : open) {
          try {
            s.close();
          } catch (IOException ignored) {
            // already closed
          }
        }
      }
    }
  }

  private static final Pattern LOG_LINE = Pattern.compile("^\\d\\d:\\d\\d:\\d\\d (INFO|WARN|ERROR) \\S+ - .*");

  @Test
  void serviceDyingMidGenerationGivesOneLine(@TempDir Path tmp) throws Exception {
    Path tiny = Fixtures.tinyA();
    var cases = Fixtures.json(tiny.resolve("cases.json"));
    long[] book = Fixtures.ids(cases, "book_ids");
    long[] question = Fixtures.ids(cases, "question_ids");
    Checkpoint ckpt = Checkpoint.open(tiny.resolve("model"));
    Path coll = MemoryCliTest.collection(tmp.resolve("book"), ckpt, MemDType.BFLOAT16, "book", book);
    Path prompt = tmp.resolve("prompt.json");
    Files.writeString(prompt, Json.idList(Fixtures.concat(book, question)));
    ServiceConfig config = new ServiceConfig();
    config.port = 0;
    config.collections.put("book", coll.toString());
    try (MemoryServer server = MemoryServer.start(config);
         DyingRelay relay = new DyingRelay(server.port(), 20_000)) {
      var r = CliTestSupport.run("generate", "--model", tiny.resolve("model").toString(), "--input-ids",
          prompt.toString(), "--max-new-tokens", "8", "--last-context-length", "20",
          "--memory", "grpc://127.0.0.1:" + relay.port(), "--collection", "book",
          "--memory-deadline-ms", "2000", "--memory-attempts", "2");
      assertTrue(relay.died(), "the service should have died mid-generation: " + r.err());
      assertEquals(2, r.code(), r.err());
      List<String> errors = r.err().lines().filter(l -> l.startsWith("longmem generate: ")).toList();
      assertEquals(1, errors.size(), r.err());
      assertTrue(errors.get(0).contains("did not answer") || errors.get(0).contains("failed on the"), r.err());
      for (String line : r.err().lines().toList()) {
        assertTrue(line.startsWith("longmem generate: ") || LOG_LINE.matcher(line).matches(),
            "not one line per message (a stack trace?): '" + line + "' in\n" + r.err());
      }
    }
  }
}
