package io.longmem.jobs.encode;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.longmem.io.InputException;
import io.longmem.memory.api.Wire;
import io.longmem.memory.fs.CollectionCache;
import io.longmem.memory.grpc.MemoryGrpc;
import io.longmem.memory.grpc.SearchRequest;
import io.longmem.memory.grpc.SearchResponse;
import io.longmem.memory.service.MemoryServer;
import io.longmem.memory.service.ServiceConfig;
import io.longmem.memory.shard.Manifest;
import io.longmem.memory.shard.ShardLayout;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The encode job writing to a real HDFS (Hadoop's MiniDFSCluster in this JVM) and a node serving
 * the collection from its {@code hdfs://} URI, both checked against a local run of the same plan.
 */
class HdfsEncodeTest {
  static MiniDFSCluster dfs;
  static FileSystem fs;
  static SparkSession spark;
  static Path tmp;
  static Path local;
  static EncodeSpec spec;

  @BeforeAll
  static void start() throws IOException {
    tmp = Files.createTempDirectory("longmem-hdfs-test");
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, tmp.resolve("dfs").toString());
    dfs = new MiniDFSCluster.Builder(conf).numDataNodes(1).build();
    dfs.waitActive();
    fs = dfs.getFileSystem();
    spark = JobFixtures.spark(2);
    Path input = tmp.resolve("in/docs.jsonl");
    EncodeJobTest.writeCorpus(input);
    spec = EncodeJobTest.spec(JobFixtures.tinyA().resolve("model"), null, "float32", 2, input, "AUTO"); // local[2]: one wave of tasks
    local = tmp.resolve("local");
    EncodeJob.run(spark, spec, local, false, 1);
  }

  @AfterAll
  static void stop() throws IOException {
    if (spark != null) {
      spark.stop();
    }
    if (dfs != null) {
      dfs.shutdown();
    }
    io.longmem.io.FileTrees.deleteRecursively(tmp);
  }

  static String uri(String path) {
    return dfs.getURI() + "/" + path;
  }

  @Test
  void encodedToHdfsIsTheLocalCollectionAndAnswersTheSame() throws Exception {
    EncodeJob.Report r = EncodeJob.run(spark, spec, uri("books"), "auto", false, 1);
    assertEquals(2, r.shards());
    // every file byte for byte, and nothing else (no staging, no attempt left over)
    Map<String, byte[]> want = localFiles(local);
    Map<String, byte[]> got = hdfsFiles("/books");
    assertEquals(want.keySet(), got.keySet());
    want.forEach((name, bytes) -> assertArrayEquals(JobJson.withoutTimes(name, bytes), JobJson.withoutTimes(name, got.get(name)), name));

    Path cache = tmp.resolve("cache");
    SearchRequest request = request(Manifest.read(local).layout());
    SearchResponse expected = search(Map.of("books", local.toString()), cache, request);
    assertTrue(expected.getHeadsCount() > 0 && expected.getDocumentsCount() > 0, "the local node found nothing");
    assertEquals(expected, search(Map.of("books", uri("books")), cache, request), "first start: fetched");

    // a second start uses the verified copy; a damaged or partial copy is fetched again
    CollectionCache c = new CollectionCache(cache, new Configuration(), true);
    CollectionCache.Local copy = c.localize(uri("books"));
    assertFalse(copy.fetched(), "a sound cached copy was fetched again");
    List<Manifest.ShardEntry> shards = Manifest.read(local).shards();
    Path arrow = copy.dir().resolve(file(shards.get(1), ".arrow"));
    byte[] sound = Files.readAllBytes(arrow);
    byte[] damaged = sound.clone();
    damaged[damaged.length / 2] ^= 0x5a;
    Files.write(arrow, damaged);
    assertEquals(expected, search(Map.of("books", uri("books")), cache, request), "damaged cache");
    assertArrayEquals(sound, Files.readAllBytes(arrow), "the damaged file was not fetched again");
    Files.delete(copy.dir().resolve(file(shards.get(0), ".faiss")));
    assertTrue(c.localize(uri("books")).fetched(), "a partial copy was used");
    assertFalse(c.localize(uri("books")).fetched());
    // a node of a cluster copies only its shards
    CollectionCache.Local one = c.localize(uri("books"), Set.of(shards.get(1).id()));
    assertTrue(one.fetched());
    assertEquals(new TreeSet<>(shards.get(1).files().stream().map(Manifest.FileEntry::path).toList()),
        new TreeSet<>(localFiles(one.dir().resolve("shards")).keySet().stream().map(p -> "shards/" + p).toList()));
  }

  @Test
  void manifestCommitNamesOneAttemptPerShardAndAnswersTheSame() throws Exception {
    EncodeJob.Report r = EncodeJob.run(spark, spec, uri("books-m"), "manifest", false, 1);
    assertEquals(2, r.shards());
    Manifest m = Manifest.read(local);
    Map<String, byte[]> got = hdfsFiles("/books-m");
    for (Manifest.ShardEntry s : m.shards()) {
      List<String> dirs = got.keySet().stream().filter(p -> p.startsWith("shards/" + s.id() + "."))
          .map(p -> p.substring(0, p.indexOf('/', "shards/".length()))).distinct().toList();
      assertEquals(1, dirs.size(), s.id() + ": " + dirs);
      for (Manifest.FileEntry f : s.files()) {
        String name = f.path().substring(("shards/" + s.id() + "/").length());
        assertArrayEquals(Files.readAllBytes(local.resolve(f.path())), got.get(dirs.get(0) + "/" + name), f.path());
      }
    }
    SearchRequest request = request(m.layout());
    assertEquals(search(Map.of("books", local.toString()), tmp.resolve("cache-l"), request),
        search(Map.of("books", uri("books-m")), tmp.resolve("cache-m"), request));
  }

  @Test
  void twoAttemptsAtOneShardLeaveOneShard() throws Exception {
    Path shard = local.resolve("shards/shard-00000");
    Manifest.ShardEntry entry = Manifest.parseShardRecord(Files.readString(shard.resolve(Manifest.SHARD_RECORD)), "x");
    Configuration conf = new Configuration();
    // rename: the second attempt's rename is refused (not moved inside the first), its upload deleted
    HadoopOutput out = HadoopOutput.of(uri("race"), "rename", conf);
    out.create();
    out.commitShard("shard-00000", "attempt-1", shard, entry);
    Manifest.ShardEntry second = out.commitShard("shard-00000", "attempt-2", shard, entry);
    assertEquals(entry.files(), second.files());
    Map<String, byte[]> got = hdfsFiles("/race");
    assertEquals(new TreeSet<>(localFiles(shard).keySet().stream().map(n -> "shards/shard-00000/" + n).toList()),
        new TreeSet<>(got.keySet()));
    // manifest: both attempts upload; the commit keeps the one the manifest names
    HadoopOutput objects = HadoopOutput.of(uri("race-m"), "manifest", conf);
    objects.create();
    objects.commitShard("shard-00000", "attempt-1", shard, entry);
    Manifest.ShardEntry won = objects.commitShard("shard-00000", "attempt-2", shard, entry);
    assertEquals("shards/shard-00000.attempt-2", won.dir());
    Manifest m = Manifest.read(local);
    objects.commitManifest(Manifest.json(m.modelFingerprint(), m.layout(), m.memDtype(), m.indexFactory(),
        List.of(won)), List.of(won));
    assertEquals(Set.of("shards/shard-00000.attempt-2"), hdfsFiles("/race-m").keySet().stream()
        .filter(p -> p.startsWith("shards/")).map(p -> p.substring(0, p.lastIndexOf('/')))
        .collect(java.util.stream.Collectors.toSet()));
  }

  static String file(Manifest.ShardEntry s, String suffix) {
    return s.files().stream().map(Manifest.FileEntry::path).filter(p -> p.endsWith(suffix)).findFirst().orElseThrow();
  }

  @Test
  void badOutputsAndCollectionsAreClearErrors() throws Exception {
    Configuration conf = new Configuration();
    var e = assertThrows(InputException.class, () -> HadoopOutput.of(uri("x"), "sometimes", conf));
    assertTrue(e.getMessage().contains("--commit must be auto, rename or manifest"), e.getMessage());
    e = assertThrows(InputException.class, () -> HadoopOutput.of("nofs://host/x", "auto", conf).exists("job.json"));
    assertTrue(e.getMessage().contains("no Hadoop filesystem for scheme 'nofs'"), e.getMessage());
    e = assertThrows(InputException.class, () -> EncodeJob.run(spark, spec, tmp.resolve("o").toString(), "manifest",
        false, 1));
    assertTrue(e.getMessage().contains("--commit manifest is for Hadoop filesystem URIs"), e.getMessage());
    // a node refuses a URI collection that is not there (naming it) and serves the others
    ServiceConfig c = new ServiceConfig();
    c.port = 0;
    c.collections = new java.util.LinkedHashMap<>(Map.of("gone", uri("nothing-here"), "books", local.toString()));
    c.cacheDir = tmp.resolve("cache-bad").toString();
    try (MemoryServer s = MemoryServer.start(c)) {
      assertEquals(Set.of("books"), s.node().collections().keySet());
    }
  }

  /** A search of every head of the first memory layer, 3 random queries, k 5, over collection "books". */
  static SearchRequest request(ShardLayout layout) {
    int queries = 3;
    float[] q = new float[queries * layout.heads() * layout.headDim()];
    Random rnd = new Random(14);
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) rnd.nextGaussian();
    }
    return SearchRequest.newBuilder().addCollections("books").setLayer(layout.layers().get(0))
        .setHeads(layout.heads()).setQueries(queries).setHeadDim(layout.headDim())
        .setQuery(Wire.bytes(q, q.length)).setK(5).build();
  }

  /** The answer of a node (on loopback) serving these collections. */
  static SearchResponse search(Map<String, String> collections, Path cache, SearchRequest request) throws Exception {
    ServiceConfig c = new ServiceConfig();
    c.port = 0;
    c.collections = new java.util.LinkedHashMap<>(collections);
    c.cacheDir = cache.toString();
    try (MemoryServer s = MemoryServer.start(c)) {
      ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
      try {
        return MemoryGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS).search(request);
      } finally {
        ch.shutdownNow();
      }
    }
  }

  static Map<String, byte[]> localFiles(Path dir) throws IOException {
    Map<String, byte[]> m = new TreeMap<>();
    try (var w = Files.walk(dir)) {
      for (Path p : w.filter(Files::isRegularFile).toList()) {
        m.put(dir.relativize(p).toString(), Files.readAllBytes(p));
      }
    }
    return m;
  }

  static Map<String, byte[]> hdfsFiles(String dir) throws IOException {
    Map<String, byte[]> m = new TreeMap<>();
    org.apache.hadoop.fs.Path root = fs.makeQualified(new org.apache.hadoop.fs.Path(dir));
    RemoteIterator<LocatedFileStatus> it = fs.listFiles(root, true);
    while (it.hasNext()) {
      org.apache.hadoop.fs.Path p = it.next().getPath();
      try (InputStream in = fs.open(p)) {
        m.put(p.toUri().getPath().substring(root.toUri().getPath().length() + 1), in.readAllBytes());
      }
    }
    return m;
  }
}
