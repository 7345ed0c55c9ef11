package io.longmem.jobs.encode;

import ai.djl.Device;
import io.longmem.encode.DocumentEncoder;
import io.longmem.model.LongLlama;
import io.longmem.model.checkpoint.Checkpoint;
import io.longmem.model.checkpoint.LongLlamaConfig;
import io.longmem.model.checkpoint.MemDType;
import io.longmem.model.compute.ComputeDType;
import io.longmem.model.tokenizer.SentencePieceTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The model as an executor JVM holds it: loaded once per JVM and shared by every task (and thread)
 * that runs there, never per task or per document. Forward passes of concurrent tasks are
 * independent (each has its own cache and memory).
 */
public final class ExecutorModel {
  private static final Logger LOG = LoggerFactory.getLogger(ExecutorModel.class);
  private static final Map<String, ExecutorModel> LOADED = new HashMap<>();

  private final Checkpoint checkpoint;
  private final LongLlamaConfig config;
  private final LongLlama model;
  private final SentencePieceTokenizer tokenizer;

  private ExecutorModel(Checkpoint checkpoint, LongLlamaConfig config, LongLlama model,
      SentencePieceTokenizer tokenizer) {
    this.checkpoint = checkpoint;
    this.config = config;
    this.model = model;
    this.tokenizer = tokenizer;
  }

  /** The model of this spec, loading it on first use in this JVM. */
  public static ExecutorModel get(EncodeSpec spec) throws IOException {
    return get(spec.model(), spec.memDType(), spec.tokenizer(), spec.torchThreads(), spec.compute());
  }

  /** The model at {@code model} with a mem_dtype override and tokenizer, in float32, loading it on first use. */
  public static ExecutorModel get(String model, String memDType, String tokenizer, int torchThreads)
      throws IOException {
    return get(model, memDType, tokenizer, torchThreads, ComputeDType.FLOAT32);
  }

  /**
   * The model at {@code model} with a mem_dtype override, tokenizer and compute dtype, loading it on
   * first use in this JVM (one model per distinct choice).
   */
  public static synchronized ExecutorModel get(String model, String memDType, String tokenizer, int torchThreads,
      ComputeDType compute) throws IOException {
    String key = model + "|" + memDType + "|" + tokenizer + "|" + compute.label();
    ExecutorModel m = LOADED.get(key);
    if (m == null) {
      configureDjl(torchThreads);
      Checkpoint ckpt = Checkpoint.open(Path.of(model));
      LongLlamaConfig config = config(ckpt, memDType);
      LongLlama loaded = LongLlama.load(ckpt, config, Device.cpu(), compute);
      m = new ExecutorModel(ckpt, config, loaded, tokenizer(ckpt, tokenizer));
      LOADED.put(key, m);
      LOG.info("executor model loaded once for this JVM: {} (memory layers {}, mem_dtype {}, {} compute)", model,
          config.memLayers(), config.memDType().pythonName(), compute.label());
    }
    return m;
  }

  public LongLlama model() {
    return model;
  }

  /** The checkpoint's config with the spec's mem_dtype override. */
  public static LongLlamaConfig config(Checkpoint ckpt, String memDType) {
    LongLlamaConfig c = ckpt.config();
    return memDType == null ? c : c.withMemDType(MemDType.parse(memDType));
  }

  /** The explicit tokenizer, else the checkpoint's tokenizer.model, else null. */
  public static SentencePieceTokenizer tokenizer(Checkpoint ckpt, String explicit) throws IOException {
    Path p = ckpt.tokenizerModel(explicit == null ? null : Path.of(explicit));
    return p == null ? null : SentencePieceTokenizer.load(p);
  }

  /**
   * DJL on an executor: offline from the libtorch inside the jar (unless the environment says
   * otherwise), and as many intra-op threads as the task was given (libtorch's pool is per JVM,
   * so this is set before the engine starts; later calls cannot change it).
   */
  public static void configureDjl(int torchThreads) {
    if (System.getenv("DJL_OFFLINE") == null && System.getProperty("ai.djl.offline") == null) {
      System.setProperty("ai.djl.offline", "true");
    }
    if (System.getenv("DJL_CACHE_DIR") == null && System.getProperty("DJL_CACHE_DIR") == null) {
      System.setProperty("DJL_CACHE_DIR", System.getProperty("user.home") + "/.cache/longmem/djl");
    }
    if (torchThreads > 0 && System.getProperty("ai.djl.pytorch.num_threads") == null) {
      System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(torchThreads));
    }
  }

  public Checkpoint checkpoint() {
    return checkpoint;
  }

  public LongLlamaConfig config() {
    return config;
  }

  public DocumentEncoder encoder() {
    return new DocumentEncoder(model);
  }

  /** An encoder whose reads attend to this kind of memory. */
  public DocumentEncoder encoder(io.longmem.model.memory.ReadMemory readMemory) {
    return new DocumentEncoder(model, false, readMemory);
  }

  /** Null when neither --tokenizer nor the checkpoint's tokenizer.model exists. */
  public SentencePieceTokenizer tokenizer() {
    return tokenizer;
  }
}
