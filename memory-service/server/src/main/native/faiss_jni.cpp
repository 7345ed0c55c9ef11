// JNI bindings for FAISS: the only native code of longmem.
//
// Everything that reaches this file has been validated in Java (FaissIndex): shapes, finite
// values, k, ids. FAISS errors raised here (outside OpenMP regions) become Java exceptions;
// errors raised inside OpenMP regions would abort the process, which is why Java checks first,
// and why an index read from disk is checked against its shard (validate) before any search. A
// read of a mapped file that lost its pages (truncated under the node) faults with SIGBUS: the
// mapped reads catch that fault (faultGuarded) instead of letting it kill the JVM.
#include <jni.h>

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/clone_index.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <omp.h>
#if defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

void throwJava(JNIEnv* env, const char* message) {
  jclass cls = env->FindClass("io/longmem/memory/faiss/FaissException");
  if (cls != nullptr) {
    env->ThrowNew(cls, message);
  }
}

// Runs body, turning C++ exceptions into io.longmem.memory.faiss.FaissException.
template <typename F>
auto guarded(JNIEnv* env, F body) -> decltype(body()) {
  try {
    return body();
  } catch (const faiss::FaissException& e) {
    throwJava(env, e.what());
  } catch (const std::exception& e) {
    throwJava(env, e.what());
  } catch (...) {
    throwJava(env, "unknown native error");
  }
  return decltype(body())();
}

faiss::Index* index(jlong handle) { return reinterpret_cast<faiss::Index*>(handle); }

std::vector<float> floats(JNIEnv* env, jfloatArray a) {
  std::vector<float> v(env->GetArrayLength(a));
  env->GetFloatArrayRegion(a, 0, static_cast<jsize>(v.size()), v.data());
  return v;
}

// Ids inside sorted, disjoint [begin, end) ranges: a search restricted to some documents.
// Under an IndexIDMap the inner index sees its own sequential ids: they are translated first.
struct RangesSelector : faiss::IDSelector {
  std::vector<faiss::Index::idx_t> bounds;  // begin0, end0, begin1, end1, ...
  const std::vector<faiss::Index::idx_t>* idMap = nullptr;
  bool is_member(idx_t id) const override {
    if (idMap != nullptr) {
      id = (*idMap)[id];
    }
    // the first bound greater than id: id is inside a range when that bound is a range's end
    auto it = std::upper_bound(bounds.begin(), bounds.end(), id);
    return (it - bounds.begin()) % 2 == 1;
  }
};

// Flat and HNSW indexes cannot take ids themselves: they are wrapped in an IndexIDMap.
faiss::Index* withIds(faiss::Index* idx) {
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(idx)) {
    // polysemous training (code reordering for Hamming pre-filtering, which we never use) costs
    // seconds to minutes per training; the factory string's "np" suffix would skip it too
    pq->do_polysemous_training = false;
  }
  if (dynamic_cast<faiss::IndexIVF*>(idx) != nullptr) {
    return idx;
  }
  auto* map = new faiss::IndexIDMap(idx);
  map->own_fields = true;
  return map;
}

// IEEE half to float for finite values (stored memory is checked finite when written): the
// half's exponent and mantissa placed in a float and scaled by 2^112 (exact, subnormals included).
inline float halfToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h & 0x7fff) << 13;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  f *= 0x1p112f;
  return (h & 0x8000) ? -f : f;
}

#if defined(__F16C__) && defined(__FMA__)
inline float horizontalSum(__m256 acc) {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}
#endif

#if defined(__F16C__) && defined(__FMA__)
// Eight stored numbers as floats.
inline __m256 load8(const uint16_t* v) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
}
inline __m256 load8(const float* v) { return _mm256_loadu_ps(v); }
#endif

inline float toFloat(uint16_t h) { return halfToFloat(h); }
inline float toFloat(float f) { return f; }

// q . v for a stored vector of float16 (uint16_t) or float32 numbers.
template <typename T>
float dot(const float* q, const T* v, int d) {
  int i = 0;
  float sum = 0;
#if defined(__F16C__) && defined(__FMA__)
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= d; i += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(v + i), acc);
  }
  sum = horizontalSum(acc);
#endif
  for (; i < d; i++) {
    sum += q[i] * toFloat(v[i]);
  }
  return sum;
}

// Asks the CPU to start loading [p, p + bytes) into its caches.
inline void prefetch(const char* p, int bytes) {
  for (int off = 0; off < bytes; off += 64) {
    __builtin_prefetch(p + off, 0, 0);
  }
  __builtin_prefetch(p + bytes - 1, 0, 0);
}

// Rows being loaded while earlier ones are worked on.
constexpr int kPrefetchAhead = 16;

// Calls work(j, address) for j < n, with the rows kPrefetchAhead further on already loading.
template <typename F>
void prefetched(const jlong* at, int n, int bytes, F work) {
  for (int j = 0; j < std::min(n, kPrefetchAhead); j++) {
    prefetch(reinterpret_cast<const char*>(at[j]), bytes);
  }
  for (int j = 0; j < n; j++) {
    if (j + kPrefetchAhead < n) {
      prefetch(reinterpret_cast<const char*>(at[j + kPrefetchAhead]), bytes);
    }
    work(j, reinterpret_cast<const char*>(at[j]));
  }
}

// A memory-mapped shard file truncated under the node (an operator's copy, a full or bad disk)
// makes a read of its lost pages raise SIGBUS, which would kill the JVM. The reads below run
// with a per-thread jump target: a SIGBUS while one is set returns to the read, which throws
// MappedReadException; any other SIGBUS goes to the handler installed before ours (the JVM's,
// which turns faults of Java's own mapped reads into InternalError). Setting the target costs
// no system call (sigsetjmp without the signal mask; the handler unblocks SIGBUS itself). The
// target lives in a pthread key, not a __thread variable: a library loaded by dlopen has no
// static TLS to spare, and the handler may run on any thread, where reading a key allocates
// nothing.
struct sigaction previousBusHandler;
pthread_key_t faultJumpKey;
bool faultGuardReady = false;

void onBus(int sig, siginfo_t* info, void* context) {
  auto* jump = faultGuardReady ? static_cast<sigjmp_buf*>(pthread_getspecific(faultJumpKey)) : nullptr;
  if (jump != nullptr) {
    pthread_setspecific(faultJumpKey, nullptr);
    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &bus, nullptr);
    siglongjmp(*jump, 1);
  }
  const struct sigaction& prev = previousBusHandler;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) {
      prev.sa_sigaction(sig, info, context);
      return;
    }
  } else if (prev.sa_handler == SIG_IGN) {
    return;
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != nullptr) {
    prev.sa_handler(sig);
    return;
  }
  // no handler before ours: the default action (the process dies, as it would have without us)
  signal(sig, SIG_DFL);
  raise(sig);
}

bool installBusHandler() {
  if (pthread_key_create(&faultJumpKey, nullptr) != 0) {
    return false;
  }
  faultGuardReady = true;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onBus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGBUS, &sa, &previousBusHandler) == 0;
}

void throwMappedRead(JNIEnv* env) {
  jclass cls = env->FindClass("io/longmem/memory/faiss/MappedReadException");
  if (cls != nullptr) {
    env->ThrowNew(cls, "a memory-mapped shard file could not be read (SIGBUS): it was truncated or "
                       "became unreadable under the node");
  }
}

// The read loops, compiled apart from the sigsetjmp below: a function that calls sigsetjmp is
// optimized conservatively (it may return twice), and the loops must not pay for that.
template <typename F>
__attribute__((noinline)) void runReads(F& reads) {
  reads();
}

// Runs reads, returning false if one of them faulted with SIGBUS.
template <typename F>
bool faultGuarded(F reads) {
  sigjmp_buf jump;
  if (!faultGuardReady) {  // no guard could be installed: read unguarded, as before
    reads();
    return true;
  }
  if (sigsetjmp(jump, 0) != 0) {
    pthread_setspecific(faultJumpKey, nullptr);
    return false;
  }
  pthread_setspecific(faultJumpKey, &jump);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the target is set before any read
  runReads(reads);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // and cleared after the last
  pthread_setspecific(faultJumpKey, nullptr);
  return true;
}

// What is wrong with an index read from a shard (empty when nothing): its structure checked
// before any search, since FAISS trusts what it reads and a bad neighbor id or list entry would
// crash a search (inside OpenMP, where even its own checks abort the process).
using idx_t = faiss::Index::idx_t;

std::string checkIds(const idx_t* ids, size_t n, idx_t rows, std::vector<bool>& seen) {
  for (size_t i = 0; i < n; i++) {
    idx_t id = ids[i];
    if (id < 0 || id >= rows) {
      return "id " + std::to_string(id) + " is outside the shard's rows [0, " + std::to_string(rows) + ")";
    }
    if (seen[id]) {
      return "id " + std::to_string(id) + " appears twice";
    }
    seen[id] = true;
  }
  return "";
}

std::string checkFlat(const faiss::Index* idx) {
  auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(idx);
  if (flat == nullptr) {
    return "unsupported storage (not a flat index)";
  }
  if (flat->codes.size() != static_cast<size_t>(flat->ntotal) * flat->code_size) {
    return "flat storage holds " + std::to_string(flat->codes.size()) + " bytes for " +
           std::to_string(flat->ntotal) + " vectors";
  }
  return "";
}

std::string checkHnsw(const faiss::IndexHNSW* idx) {
  const faiss::HNSW& g = idx->hnsw;
  idx_t n = idx->ntotal;
  if (idx->storage == nullptr || idx->storage->ntotal != n || idx->storage->d != idx->d) {
    return "HNSW storage does not hold the index's vectors";
  }
  std::string flat = checkFlat(idx->storage);
  if (!flat.empty()) {
    return "HNSW " + flat;
  }
  if (g.levels.size() != static_cast<size_t>(n) || g.offsets.size() != static_cast<size_t>(n) + 1 ||
      g.offsets[0] != 0) {
    return "HNSW graph does not describe " + std::to_string(n) + " vectors";
  }
  if (g.efSearch < 1 || g.efSearch > (1 << 20)) {
    return "HNSW efSearch " + std::to_string(g.efSearch) + " is outside [1, 2^20]";
  }
  int maxLevels = static_cast<int>(g.cum_nneighbor_per_level.size()) - 1;
  for (idx_t i = 0; i < n; i++) {
    int levels = g.levels[i];
    if (levels < 1 || levels > maxLevels ||
        g.offsets[i + 1] - g.offsets[i] != static_cast<size_t>(g.cum_nneighbor_per_level[levels]) ||
        g.offsets[i + 1] < g.offsets[i]) {
      return "HNSW graph: vector " + std::to_string(i) + " has a bad level or neighbor list";
    }
  }
  if (g.offsets[n] != g.neighbors.size()) {
    return "HNSW graph: neighbor lists do not cover the neighbor table";
  }
  for (size_t j = 0; j < g.neighbors.size(); j++) {
    if (g.neighbors[j] < -1 || g.neighbors[j] >= n) {
      return "HNSW graph: neighbor " + std::to_string(g.neighbors[j]) + " is outside [0, " + std::to_string(n) + ")";
    }
  }
  if (n == 0 ? g.entry_point != -1
             : (g.entry_point < 0 || g.entry_point >= n || g.max_level != g.levels[g.entry_point] - 1)) {
    return "HNSW graph: bad entry point " + std::to_string(g.entry_point);
  }
  return "";
}

std::string checkIvf(const faiss::IndexIVF* ivf, idx_t rows) {
  const faiss::InvertedLists* lists = ivf->invlists;
  if (ivf->quantizer == nullptr || lists == nullptr || ivf->quantizer->ntotal != static_cast<idx_t>(ivf->nlist) ||
      ivf->quantizer->d != ivf->d || lists->nlist != ivf->nlist || lists->code_size != ivf->code_size) {
    return "IVF lists do not match its quantizer";
  }
  std::vector<bool> seen(rows);
  size_t total = 0;
  for (size_t l = 0; l < ivf->nlist; l++) {
    size_t n = lists->list_size(l);
    total += n;
    if (total > static_cast<size_t>(rows)) {
      return "IVF lists hold more vectors than the shard has rows";
    }
    if (n == 0) {
      continue;
    }
    faiss::InvertedLists::ScopedIds ids(lists, l);
    std::string why = checkIds(ids.get(), n, rows, seen);
    if (!why.empty()) {
      return "IVF list " + std::to_string(l) + ": " + why;
    }
  }
  if (total != static_cast<size_t>(ivf->ntotal)) {
    return "IVF lists hold " + std::to_string(total) + " vectors, the index says " + std::to_string(ivf->ntotal);
  }
  return "";
}

std::string checkIndex(const faiss::Index* idx, idx_t rows) {
  if (idx->ntotal != rows) {
    return "it indexes " + std::to_string(idx->ntotal) + " vectors, the shard has " + std::to_string(rows) + " rows";
  }
  if (idx->metric_type != faiss::METRIC_INNER_PRODUCT) {
    return "its metric is not inner product";
  }
  if (!idx->is_trained) {
    return "it is not trained";
  }
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(idx)) {
    return checkIvf(ivf, rows);
  }
  auto* map = dynamic_cast<const faiss::IndexIDMap*>(idx);
  if (map == nullptr || map->index == nullptr) {
    return "unsupported index type (not IVF, nor Flat or HNSW under an IDMap)";
  }
  const faiss::Index* inner = map->index;
  if (map->id_map.size() != static_cast<size_t>(rows) || inner->ntotal != rows || inner->d != idx->d ||
      inner->metric_type != idx->metric_type) {
    return "its id map does not match the vectors it maps";
  }
  std::vector<bool> seen(rows);
  std::string why = checkIds(map->id_map.data(), map->id_map.size(), rows, seen);
  if (!why.empty()) {
    return why;
  }
  if (auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(inner)) {
    return checkHnsw(hnsw);
  }
  if (dynamic_cast<const faiss::IndexFlat*>(inner) != nullptr) {
    return checkFlat(inner);
  }
  return "unsupported index type under its IDMap (not Flat or HNSW)";
}

}  // namespace

extern "C" {

// Exact inner products of one query with n stored vectors lying at the given addresses (in
// memory-mapped shard files), float16 or float32: the refine step of approximate search. The
// vectors are scattered over gigabytes, so each one is a cache (and TLB) miss: prefetching the
// next ones while scoring overlaps those misses. Java checked every argument (MappedReads).
JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_innerProducts(
    JNIEnv* env, jclass, jfloatArray query, jint qOff, jint d, jlongArray addresses, jint n,
    jboolean half, jfloatArray out) {
  auto* q = static_cast<float*>(env->GetPrimitiveArrayCritical(query, nullptr));
  auto* at = static_cast<jlong*>(env->GetPrimitiveArrayCritical(addresses, nullptr));
  auto* scores = static_cast<float*>(env->GetPrimitiveArrayCritical(out, nullptr));
  bool read = true;
  if (q != nullptr && at != nullptr && scores != nullptr) {
    read = faultGuarded([&]() {
      prefetched(at, n, d * (half ? 2 : 4), [&](int j, const char* v) {
        scores[j] = half ? dot(q + qOff, reinterpret_cast<const uint16_t*>(v), d)
                         : dot(q + qOff, reinterpret_cast<const float*>(v), d);
      });
    });
  }
  if (scores != nullptr) env->ReleasePrimitiveArrayCritical(out, scores, 0);
  if (at != nullptr) env->ReleasePrimitiveArrayCritical(addresses, at, JNI_ABORT);
  if (q != nullptr) env->ReleasePrimitiveArrayCritical(query, q, JNI_ABORT);
  if (!read) throwMappedRead(env);
}

// Copies `bytes` bytes from each of n addresses into out from outOff, one after another (an
// answer's keys, values or positions, gathered from memory-mapped shard files), prefetching ahead.
JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_gather(
    JNIEnv* env, jclass, jlongArray addresses, jint n, jint bytes, jbyteArray out, jint outOff) {
  auto* at = static_cast<jlong*>(env->GetPrimitiveArrayCritical(addresses, nullptr));
  auto* dst = static_cast<char*>(env->GetPrimitiveArrayCritical(out, nullptr));
  bool read = true;
  if (at != nullptr && dst != nullptr) {
    read = faultGuarded([&]() {
      prefetched(at, n, bytes, [&](int j, const char* v) {
        std::memcpy(dst + outOff + static_cast<size_t>(j) * bytes, v, bytes);
      });
    });
  }
  if (dst != nullptr) env->ReleasePrimitiveArrayCritical(out, dst, 0);
  if (at != nullptr) env->ReleasePrimitiveArrayCritical(addresses, at, JNI_ABORT);
  if (!read) throwMappedRead(env);
}

// Installs the SIGBUS guard of the mapped reads when the library loads.
JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM*, void*) {
  installBusHandler();
  return JNI_VERSION_1_8;
}

// What is wrong with an index for a shard of `rows` rows, or null when nothing (checkIndex).
JNIEXPORT jstring JNICALL Java_io_longmem_memory_faiss_FaissNative_validate(
    JNIEnv* env, jclass, jlong h, jlong rows) {
  return guarded(env, [&]() -> jstring {
    std::string why = checkIndex(index(h), rows);
    return why.empty() ? nullptr : env->NewStringUTF(why.c_str());
  });
}

// The address of a direct buffer's memory (a memory-mapped shard file), for innerProducts.
JNIEXPORT jlong JNICALL Java_io_longmem_memory_faiss_FaissNative_address(JNIEnv* env, jclass, jobject buffer) {
  return reinterpret_cast<jlong>(env->GetDirectBufferAddress(buffer));
}

JNIEXPORT jlong JNICALL Java_io_longmem_memory_faiss_FaissNative_create(
    JNIEnv* env, jclass, jint d, jstring factory, jboolean innerProduct) {
  return guarded(env, [&]() -> jlong {
    const char* chars = env->GetStringUTFChars(factory, nullptr);
    std::string desc(chars);
    env->ReleaseStringUTFChars(factory, chars);
    faiss::Index* idx = faiss::index_factory(
        d, desc.c_str(), innerProduct ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2);
    return reinterpret_cast<jlong>(withIds(idx));
  });
}

JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_train(
    JNIEnv* env, jclass, jlong h, jlong n, jfloatArray x) {
  guarded(env, [&]() -> int {
    std::vector<float> v = floats(env, x);
    index(h)->train(n, v.data());
    return 0;
  });
}

// Adds the n vectors that start at float offset of x (a run inside a larger array).
JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_addWithIds(
    JNIEnv* env, jclass, jlong h, jlong n, jfloatArray x, jint offset, jlongArray ids) {
  guarded(env, [&]() -> int {
    std::vector<float> v(static_cast<size_t>(n) * index(h)->d);
    env->GetFloatArrayRegion(x, offset, static_cast<jsize>(v.size()), v.data());
    std::vector<faiss::Index::idx_t> i(n);
    env->GetLongArrayRegion(ids, 0, static_cast<jsize>(n), reinterpret_cast<jlong*>(i.data()));
    index(h)->add_with_ids(n, v.data(), i.data());
    return 0;
  });
}

JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_search(
    JNIEnv* env, jclass, jlong h, jlong n, jfloatArray x, jint k, jint nprobe, jint efSearch,
    jlongArray ranges, jfloatArray distances, jlongArray labels) {
  guarded(env, [&]() -> int {
    std::vector<float> q = floats(env, x);
    std::vector<float> dist(static_cast<size_t>(n) * k);
    std::vector<faiss::Index::idx_t> lab(static_cast<size_t>(n) * k);
    const faiss::Index* target = index(h);
    const faiss::IndexIDMap* map = dynamic_cast<const faiss::IndexIDMap*>(target);
    if (map != nullptr) {
      target = map->index;  // search the inner index with parameters, translate ids below
    }
    faiss::IndexHNSW* hnswIndex = nullptr;
    int savedEf = 0;
    faiss::SearchParametersIVF ivf;
    faiss::SearchParametersHNSW hnsw;
    faiss::SearchParameters plain;
    const faiss::SearchParameters* params = nullptr;
    RangesSelector selector;
    const faiss::IDSelector* sel = nullptr;
    if (ranges != nullptr) {
      selector.bounds.resize(env->GetArrayLength(ranges));
      env->GetLongArrayRegion(ranges, 0, static_cast<jsize>(selector.bounds.size()),
                              reinterpret_cast<jlong*>(selector.bounds.data()));
      selector.idMap = map != nullptr ? &map->id_map : nullptr;
      sel = &selector;
    }
    if (auto* ivfIndex = dynamic_cast<const faiss::IndexIVF*>(target)) {
      if (nprobe > 0 || sel != nullptr) {
        ivf.nprobe = nprobe > 0 ? nprobe : ivfIndex->nprobe;
        ivf.sel = const_cast<faiss::IDSelector*>(sel);
        params = &ivf;
      }
    } else if (auto* hnswConst = dynamic_cast<const faiss::IndexHNSW*>(target)) {
      if (efSearch > 0) {
        // FAISS 1.7.3 reads part of the search from the index's own efSearch, not the
        // parameters: set both (Java holds the index exclusively for such searches)
        hnswIndex = const_cast<faiss::IndexHNSW*>(hnswConst);
        savedEf = hnswIndex->hnsw.efSearch;
        hnswIndex->hnsw.efSearch = efSearch;
      }
      if (efSearch > 0 || sel != nullptr) {
        hnsw.efSearch = efSearch > 0 ? efSearch : hnswConst->hnsw.efSearch;
        hnsw.sel = const_cast<faiss::IDSelector*>(sel);
        params = &hnsw;
      }
    } else if (sel != nullptr) {
      plain.sel = const_cast<faiss::IDSelector*>(sel);
      params = &plain;
    }
    struct Restore {
      faiss::IndexHNSW* index;
      int ef;
      ~Restore() {
        if (index != nullptr) index->hnsw.efSearch = ef;
      }
    } restore{hnswIndex, savedEf};
    target->search(n, q.data(), k, dist.data(), lab.data(), params);
    if (map != nullptr) {
      for (auto& l : lab) {
        l = l < 0 ? -1 : map->id_map[l];
      }
    }
    env->SetFloatArrayRegion(distances, 0, static_cast<jsize>(dist.size()), dist.data());
    env->SetLongArrayRegion(labels, 0, static_cast<jsize>(lab.size()),
                            reinterpret_cast<const jlong*>(lab.data()));
    return 0;
  });
}

JNIEXPORT jlong JNICALL Java_io_longmem_memory_faiss_FaissNative_cloneIndex(JNIEnv* env, jclass, jlong h) {
  return guarded(env, [&]() -> jlong { return reinterpret_cast<jlong>(faiss::clone_index(index(h))); });
}

JNIEXPORT jlong JNICALL Java_io_longmem_memory_faiss_FaissNative_ntotal(JNIEnv*, jclass, jlong h) {
  return index(h)->ntotal;
}

JNIEXPORT jint JNICALL Java_io_longmem_memory_faiss_FaissNative_dim(JNIEnv*, jclass, jlong h) {
  return index(h)->d;
}

JNIEXPORT jboolean JNICALL Java_io_longmem_memory_faiss_FaissNative_isTrained(JNIEnv*, jclass, jlong h) {
  return index(h)->is_trained;
}

// True when search scores are exact (a flat index, possibly under an IDMap).
JNIEXPORT jboolean JNICALL Java_io_longmem_memory_faiss_FaissNative_isExact(JNIEnv*, jclass, jlong h) {
  const faiss::Index* idx = index(h);
  if (auto* map = dynamic_cast<const faiss::IndexIDMap*>(idx)) {
    idx = map->index;
  }
  return dynamic_cast<const faiss::IndexFlat*>(idx) != nullptr;
}

JNIEXPORT jboolean JNICALL Java_io_longmem_memory_faiss_FaissNative_isInnerProduct(JNIEnv*, jclass, jlong h) {
  return index(h)->metric_type == faiss::METRIC_INNER_PRODUCT;
}

JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_write(
    JNIEnv* env, jclass, jlong h, jstring path) {
  guarded(env, [&]() -> int {
    const char* p = env->GetStringUTFChars(path, nullptr);
    std::string file(p);
    env->ReleaseStringUTFChars(path, p);
    faiss::write_index(index(h), file.c_str());
    return 0;
  });
}

JNIEXPORT jlong JNICALL Java_io_longmem_memory_faiss_FaissNative_read(
    JNIEnv* env, jclass, jstring path, jboolean mmap) {
  return guarded(env, [&]() -> jlong {
    const char* p = env->GetStringUTFChars(path, nullptr);
    std::string file(p);
    env->ReleaseStringUTFChars(path, p);
    int flags = mmap ? faiss::IO_FLAG_MMAP : 0;
    return reinterpret_cast<jlong>(faiss::read_index(file.c_str(), flags));
  });
}

JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_free(JNIEnv*, jclass, jlong h) {
  delete index(h);
}

JNIEXPORT void JNICALL Java_io_longmem_memory_faiss_FaissNative_setThreads(JNIEnv*, jclass, jint n) {
  omp_set_num_threads(n);
}

// OpenBLAS's Fortran LAPACK objects that FAISS pulls in (error reporting) call this one
// libgfortran routine; Debian's libgfortran.a is not position-independent, so it is defined here
// with libgfortran's semantics: dest = s1 + s2, cut or padded with blanks to destlen.
void _gfortran_concat_string(size_t destlen, char* dest, size_t len1, const char* s1, size_t len2,
                             const char* s2) {
  size_t n = len1 < destlen ? len1 : destlen;
  std::memcpy(dest, s1, n);
  size_t m = len2 < destlen - n ? len2 : destlen - n;
  std::memcpy(dest + n, s2, m);
  std::memset(dest + n + m, ' ', destlen - n - m);
}

}  // extern "C"
