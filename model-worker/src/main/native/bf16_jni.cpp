// bfloat16 matrices for the model's large projections: weights converted once to bfloat16 and
// packed into the layout oneDNN's matmul wants (AMX / AVX512-BF16 kernels where the CPU has them),
// activations rounded to bfloat16 per call, float32 accumulate and output. Where oneDNN has no
// bfloat16 matmul for the CPU (no AVX512), a portable kernel on the plain bfloat16 weights gives the
// same arithmetic. The JNI side is io.longmem.model.compute.Bf16Native.
#include <jni.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include <dnnl.hpp>

namespace {

using dnnl::memory;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// float32 -> bfloat16, round to nearest even (as torch rounds); NaN stays a quiet NaN.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Whether the AVX512 builds of the loops below may run (AVX512BW and VL; checked once).
bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return yes;
}

// to_bf16 over a range, branch-free so that the compiler vectorizes it; an AVX512 build of the
// same loop where the CPU has AVX512BW (the activations' rounding is a pass over every input).
#define LONGMEM_ROUND_BODY                                                    \
  for (int64_t i = 0; i < n; i++) {                                           \
    uint32_t u;                                                               \
    std::memcpy(&u, in + i, 4);                                               \
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;                      \
    uint32_t q = (u >> 16) | 0x40u;                                           \
    out[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? q : r); \
  }

__attribute__((target("avx512f,avx512bw,avx512vl"))) void round_range_avx512(const float* in, uint16_t* out,
    int64_t n) {
  LONGMEM_ROUND_BODY
}

void round_range_plain(const float* in, uint16_t* out, int64_t n) {
  LONGMEM_ROUND_BODY
}

void round_range(const float* in, uint16_t* out, int64_t n) {
  if (has_avx512()) {
    round_range_avx512(in, out, n);
  } else {
    round_range_plain(in, out, n);
  }
}

// x rounded to bfloat16 and widened back to float32 (torch's .to(bfloat16).float(): round to
// nearest even, NaN kept quiet), branch-free so that it vectorizes.
#define LONGMEM_WIDEN_BODY                                                      \
  for (int64_t i = 0; i < n; i++) {                                             \
    uint32_t u;                                                                 \
    std::memcpy(&u, in + i, 4);                                                 \
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;                \
    uint32_t q = (u & 0xffff0000u) | 0x400000u;                                 \
    uint32_t v = (u & 0x7fffffffu) > 0x7f800000u ? q : r;                       \
    std::memcpy(out + i, &v, 4);                                                \
  }

__attribute__((target("avx512f,avx512bw,avx512vl"))) void widen_range_avx512(const float* in, float* out,
    int64_t n) {
  LONGMEM_WIDEN_BODY
}

void widen_range_plain(const float* in, float* out, int64_t n) {
  LONGMEM_WIDEN_BODY
}

void widen_range(const float* in, float* out, int64_t n) {
  if (has_avx512()) {
    widen_range_avx512(in, out, n);
  } else {
    widen_range_plain(in, out, n);
  }
}

// range(b, e) over [0, count) split into one contiguous part per thread of the calling thread's
// OpenMP team when count is large.
template <typename F>
void split_over_team(int64_t count, F range) {
#pragma omp parallel if (count > 65536)
  {
    int64_t teams = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (count + teams - 1) / teams;
    int64_t b = t * chunk, e = b + chunk < count ? b + chunk : count;
    if (b < e) range(b, e);
  }
}

// Rounds count floats to bfloat16, split over the team when large.
void round_all(const float* in, uint16_t* out, int64_t count) {
  split_over_team(count, [&](int64_t b, int64_t e) { round_range(in + b, out + b, e - b); });
}

// IEEE half -> float32 (load time only, so plain code rather than F16C).
inline float from_f16(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { e++; man <<= 1; } while ((man & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Matrix {
  int64_t n, k;                 // weight [n, k] as checkpoints store it: y = x @ W^T
  std::vector<uint16_t> plain;  // bfloat16 [n, k]: while filling, and for the portable kernel
  bool packed = false;          // oneDNN layout in `blocked`, plain freed
  memory::desc blocked_md;
  memory blocked;
  std::mutex mu;
  // one primitive per activation row count, with its scratchpad size (the caller's thread holds the
  // scratchpad, so concurrent calls on one matrix never share one)
  std::unordered_map<int64_t, std::pair<dnnl::matmul, memory::desc>> by_rows;
};

std::string isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::all: return "all";
    default: return "other";
  }
}

dnnl::matmul::primitive_desc describe(int64_t m, int64_t n, int64_t k, const memory::desc& weights) {
  memory::desc src({m, k}, memory::data_type::bf16, memory::format_tag::ab);
  memory::desc dst({m, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, engine());
}

void throw_java(JNIEnv* env, const char* cls, const std::string& msg) {
  jclass c = env->FindClass(cls);
  if (c != nullptr) env->ThrowNew(c, msg.c_str());
}

Matrix* of(jlong h) { return reinterpret_cast<Matrix*>(h); }

// Where matmul time goes (for the benchmarks): rounding the activations, the multiply itself.
std::atomic<int64_t> ns_round{0}, ns_multiply{0}, calls{0};

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A buffer of at least n elements per thread and per Tag, grown as needed and kept for reuse.
template <typename T, int Tag>
T* thread_buffer(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n || buf.empty()) buf.resize(n > 0 ? n : 1);
  return buf.data();
}

// The calling thread's buffers: activations (or a matmul's first operand) rounded to bfloat16, a
// second rounded operand, oneDNN's scratchpad, the MLP's gate/up output; and, per thread of the
// fused attention's team, its block's scores, weights and queries.
enum BufferTag { kRounded, kRoundedB, kPad, kGateUp, kScores, kWeights, kQueries };

uint16_t* scratch(size_t n) { return thread_buffer<uint16_t, kRounded>(n); }
uint16_t* scratch_b(size_t n) { return thread_buffer<uint16_t, kRoundedB>(n); }
void* pad(size_t bytes) { return thread_buffer<char, kPad>(bytes); }

void portable(const Matrix& w, const uint16_t* x, float* y, int64_t m) {
  const int64_t n = w.n, k = w.k;
  const uint16_t* wp = w.plain.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      const uint16_t* xr = x + i * k;
      const uint16_t* wr = wp + j * k;
      float acc = 0.f;
      for (int64_t t = 0; t < k; t++) acc += from_bf16(xr[t]) * from_bf16(wr[t]);
      y[i * n + j] = acc;
    }
  }
}

// Batched matmuls of two activations (attention's q.k^T and weights.v): one primitive per shape,
// cached (a bounded map: prefill has few shapes; it is cleared when full).
struct BmmKey {
  int64_t batch, m, n, k;
  bool trans_b;
  bool operator==(const BmmKey& o) const {
    return batch == o.batch && m == o.m && n == o.n && k == o.k && trans_b == o.trans_b;
  }
};
struct BmmKeyHash {
  size_t operator()(const BmmKey& key) const {
    size_t h = std::hash<int64_t>()(key.batch);
    for (int64_t v : {key.m, key.n, key.k, static_cast<int64_t>(key.trans_b)}) h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};
std::mutex bmm_mu;
std::unordered_map<BmmKey, std::pair<dnnl::matmul, memory::desc>, BmmKeyHash> bmm_prims;




// y[m, n] = xs @ W^T in float32, xs already bfloat16; counts the time from t1 as multiplying.
// Throws a Java IllegalStateException (and returns false) where oneDNN fails.
bool multiply(JNIEnv* env, Matrix* w, const uint16_t* xs, float* y, int64_t m, int64_t t1) {
  if (!w->packed) {
    portable(*w, xs, y, m);
    ns_multiply += now_ns() - t1;
    return true;
  }
  try {
    dnnl::matmul prim;
    memory::desc pad_md;
    {
      std::lock_guard<std::mutex> lock(w->mu);
      auto it = w->by_rows.find(m);
      if (it == w->by_rows.end()) {
        auto pd = describe(m, w->n, w->k, w->blocked_md);
        it = w->by_rows.emplace(m, std::make_pair(dnnl::matmul(pd), pd.scratchpad_desc())).first;
      }
      prim = it->second.first;
      pad_md = it->second.second;
    }
    memory src({{m, w->k}, memory::data_type::bf16, memory::format_tag::ab}, engine(), const_cast<uint16_t*>(xs));
    memory dst({{m, w->n}, memory::data_type::f32, memory::format_tag::ab}, engine(), y);
    memory scratchpad(pad_md, engine(), pad(pad_md.get_size()));
    dnnl::stream s(engine());
    prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w->blocked}, {DNNL_ARG_DST, dst},
        {DNNL_ARG_SCRATCHPAD, scratchpad}});
    s.wait();
    ns_multiply += now_ns() - t1;
    return true;
  } catch (const dnnl::error& e) {
    throw_java(env, "java/lang/IllegalStateException", std::string("oneDNN bfloat16 matmul failed: ") + e.what());
    return false;
  }
}

// A matmul's float32 activations rounded into this thread's scratch buffer (the time counted as
// rounding, the call counted).
uint16_t* round_activations(const float* x, int64_t count) {
  int64_t t0 = now_ns();
  uint16_t* xs = scratch(static_cast<size_t>(count));
  round_all(x, xs, count);
  ns_round += now_ns() - t0;
  calls++;
  return xs;
}

// Two float32 operands rounded into this thread's two scratch buffers (the time counted as rounding).
std::pair<uint16_t*, uint16_t*> round_operands(const float* a, int64_t na, const float* b, int64_t nb) {
  uint16_t* as = round_activations(a, na);
  int64_t t0 = now_ns();
  uint16_t* bs = scratch_b(static_cast<size_t>(nb));
  round_all(b, bs, nb);
  ns_round += now_ns() - t0;
  return {as, bs};
}


// e^x for the softmax, branch-free so that it vectorizes: x = n ln2 + r, |r| <= ln2/2, a degree-6
// polynomial for e^r (Cephes' coefficients), 2^n by the exponent bits; 0 below -87 (where float32
// e^x is subnormal or 0: the masked keys, floored at -1e6).
#define LONGMEM_EXP(x, out)                                                                       \
  {                                                                                               \
    float xc = (x) < -87.f ? -87.f : ((x) > 88.f ? 88.f : (x));                                   \
    float fn = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);                                \
    float r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;                                      \
    float p = 1.9875691500e-4f;                                                                   \
    p = p * r + 1.3981999507e-3f;                                                                 \
    p = p * r + 8.3334519073e-3f;                                                                 \
    p = p * r + 4.1665795894e-2f;                                                                 \
    p = p * r + 1.6666665459e-1f;                                                                 \
    p = p * r + 5.0000001201e-1f;                                                                 \
    p = p * r * r + r + 1.f;                                                                      \
    int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;                                        \
    float two_n;                                                                                  \
    std::memcpy(&two_n, &bits, 4);                                                                \
    out = (x) < -87.f ? 0.f : p * two_n;                                                          \
  }

// One query's softmax over n scores s (in place: scaled, masked, floored, exponentiated), written
// as bfloat16 weights to w: the float32 arithmetic of the reference's masked softmax.
#define LONGMEM_SOFTMAX_BODY                                                    \
  float mx = -3.4e38f;                                                          \
  _Pragma("omp simd reduction(max : mx)")                                       \
  for (int64_t j = 0; j < n; j++) {                                             \
    float v = s[j] / scale + mask[j];                                           \
    v = v > floor ? v : floor;                                                  \
    s[j] = v;                                                                   \
    mx = v > mx ? v : mx;                                                       \
  }                                                                             \
  float sum = 0.f;                                                              \
  _Pragma("omp simd reduction(+ : sum)")                                        \
  for (int64_t j = 0; j < n; j++) {                                             \
    float e;                                                                    \
    LONGMEM_EXP(s[j] - mx, e)                                                   \
    s[j] = e;                                                                   \
    sum += e;                                                                   \
  }                                                                             \
  float inv = 1.f / sum;                                                        \
  _Pragma("omp simd")                                                           \
  for (int64_t j = 0; j < n; j++) {                                             \
    uint32_t u;                                                                 \
    float f = s[j] * inv;                                                       \
    std::memcpy(&u, &f, 4);                                                     \
    w[j] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);      \
  }

__attribute__((target("avx512f,avx512bw,avx512vl"))) void softmax_row_avx512(float* s, const float* mask,
    uint16_t* w, int64_t n, float scale, float floor) {
  LONGMEM_SOFTMAX_BODY
}

void softmax_row_plain(float* s, const float* mask, uint16_t* w, int64_t n, float scale, float floor) {
  LONGMEM_SOFTMAX_BODY
}

void softmax_row(float* s, const float* mask, uint16_t* w, int64_t n, float scale, float floor) {
  if (has_avx512()) {
    softmax_row_avx512(s, mask, w, n, scale, floor);
  } else {
    softmax_row_plain(s, mask, w, n, scale, floor);
  }
}

// The MLP's activation: bf16(silu(g) * u) over rows of [g | u] (gate and up side by side, as the
// fused gate/up projection returns them); silu(g) = g / (1 + e^-g), as torch computes it.
#define LONGMEM_SWIGLU_BODY                                                     \
  _Pragma("omp simd")                                                           \
  for (int64_t j = 0; j < n; j++) {                                             \
    float g = gu[j], e;                                                         \
    LONGMEM_EXP(-g, e)                                                          \
    float f = g / (1.f + e) * gu[n + j];                                        \
    uint32_t u;                                                                 \
    std::memcpy(&u, &f, 4);                                                     \
    out[j] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);    \
  }

__attribute__((target("avx512f,avx512bw,avx512vl"))) void swiglu_row_avx512(const float* gu, uint16_t* out,
    int64_t n) {
  LONGMEM_SWIGLU_BODY
}

void swiglu_row_plain(const float* gu, uint16_t* out, int64_t n) {
  LONGMEM_SWIGLU_BODY
}

void swiglu_rows(const float* gu, uint16_t* out, int64_t rows, int64_t n) {
  const bool avx512 = has_avx512();
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t i = 0; i < rows; i++) {
    if (avx512) {
      swiglu_row_avx512(gu + i * 2 * n, out + i * n, n);
    } else {
      swiglu_row_plain(gu + i * 2 * n, out + i * n, n);
    }
  }
}

// The fused attention's two matmuls for a block of m queries over n keys of dim d: scores
// (bf16 q [m, d] by bf16 keys [n, d] transposed) and output (bf16 weights [m, n] by values [n, d]).
struct AttnKey {
  int64_t m, n, d;
  bool scores;
  bool operator==(const AttnKey& o) const { return m == o.m && n == o.n && d == o.d && scores == o.scores; }
};
struct AttnKeyHash {
  size_t operator()(const AttnKey& key) const {
    size_t h = std::hash<int64_t>()(key.m);
    for (int64_t v : {key.n, key.d, static_cast<int64_t>(key.scores)}) h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};
std::mutex attn_mu;
std::unordered_map<AttnKey, std::pair<dnnl::matmul, memory::desc>, AttnKeyHash> attn_prims;

std::pair<dnnl::matmul, memory::desc> attn_prim(int64_t m, int64_t n, int64_t d, bool scores) {
  std::lock_guard<std::mutex> lock(attn_mu);
  AttnKey key{m, n, d, scores};
  auto it = attn_prims.find(key);
  if (it == attn_prims.end()) {
    if (attn_prims.size() >= 256) attn_prims.clear();
    int64_t inner = scores ? d : n, outer = scores ? n : d;
    memory::desc a_md({m, inner}, memory::data_type::bf16, memory::format_tag::ab);
    memory::desc b_md({inner, outer}, memory::data_type::bf16, scores ? memory::format_tag::ba : memory::format_tag::ab);
    memory::desc c_md({m, outer}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
    it = attn_prims.emplace(key, std::make_pair(dnnl::matmul(pd), pd.scratchpad_desc())).first;
  }
  return it->second;
}

void run(const std::pair<dnnl::matmul, memory::desc>& prim, const dnnl::stream& s, const memory::desc& a_md,
    void* a, const memory::desc& b_md, void* b, const memory::desc& c_md, void* c, void* scratch_pad) {
  memory am(a_md, engine(), a), bm(b_md, engine(), b), cm(c_md, engine(), c), pm(prim.second, engine(), scratch_pad);
  prim.first.execute(const_cast<dnnl::stream&>(s),
      {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, pm}});
}

// Queries per block of the fused attention: a block's float32 scores over 8k keys stay in L2.
constexpr int64_t kQueryBlock = 32;

}  // namespace

extern "C" {

JNIEXPORT jstring JNICALL Java_io_longmem_model_compute_Bf16Native_isa(JNIEnv* env, jclass) {
  return env->NewStringUTF(isa_name().c_str());
}

JNIEXPORT jboolean JNICALL Java_io_longmem_model_compute_Bf16Native_limitIsa(JNIEnv* env, jclass, jstring name) {
  const char* s = env->GetStringUTFChars(name, nullptr);
  std::string n(s);
  env->ReleaseStringUTFChars(name, s);
  dnnl::cpu_isa isa = n == "avx2" ? dnnl::cpu_isa::avx2
      : n == "avx512_core" ? dnnl::cpu_isa::avx512_core
      : n == "avx512_core_bf16" ? dnnl::cpu_isa::avx512_core_bf16 : dnnl::cpu_isa::all;
  try {
    dnnl::set_max_cpu_isa(isa);
    return JNI_TRUE;
  } catch (const dnnl::error&) {
    return JNI_FALSE;  // too late: a primitive was already created
  }
}

JNIEXPORT jlong JNICALL Java_io_longmem_model_compute_Bf16Native_create(JNIEnv* env, jclass, jlong n, jlong k) {
  try {
    auto* w = new Matrix();
    w->n = n;
    w->k = k;
    w->plain.assign(static_cast<size_t>(n) * static_cast<size_t>(k), 0);
    return reinterpret_cast<jlong>(w);
  } catch (const std::bad_alloc&) {
    throw_java(env, "java/lang/OutOfMemoryError", "no native memory for a bfloat16 matrix");
    return 0;
  }
}

// Rows [row0, row0 + rows) from a direct buffer of float32 (type 0), float16 (1) or bfloat16 (2).
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_setRows(JNIEnv* env, jclass, jlong h, jlong row0,
    jlong rows, jobject src, jint type) {
  Matrix* w = of(h);
  const void* p = env->GetDirectBufferAddress(src);
  int64_t count = rows * w->k;
  int64_t need = count * (type == 0 ? 4 : 2);
  if (p == nullptr || env->GetDirectBufferCapacity(src) < need || w->packed || row0 < 0 || row0 + rows > w->n) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad rows for a bfloat16 matrix");
    return;
  }
  uint16_t* out = w->plain.data() + row0 * w->k;
  if (type == 2) {
    std::memcpy(out, p, count * 2);
  } else if (type == 1) {
    const uint16_t* in = static_cast<const uint16_t*>(p);
    for (int64_t i = 0; i < count; i++) out[i] = to_bf16(from_f16(in[i]));
  } else {
    const float* in = static_cast<const float*>(p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) out[i] = to_bf16(in[i]);
  }
}

// Packs the filled matrix for oneDNN; false (the plain copy kept) where oneDNN has no bf16 matmul.
JNIEXPORT jboolean JNICALL Java_io_longmem_model_compute_Bf16Native_pack(JNIEnv* env, jclass, jlong h) {
  Matrix* w = of(h);
  try {
    memory::desc any({w->k, w->n}, memory::data_type::bf16, memory::format_tag::any);
    dnnl::matmul::primitive_desc pd;
    try {
      pd = describe(256, w->n, w->k, any);
    } catch (const dnnl::error&) {
      return JNI_FALSE;
    }
    memory::desc plain_md({w->k, w->n}, memory::data_type::bf16, memory::format_tag::ba);
    memory plain(plain_md, engine(), w->plain.data());
    w->blocked_md = pd.weights_desc();
    w->blocked = memory(w->blocked_md, engine());
    dnnl::stream s(engine());
    dnnl::reorder(plain, w->blocked).execute(s, plain, w->blocked);
    s.wait();
    std::vector<uint16_t>().swap(w->plain);
    w->packed = true;
    return JNI_TRUE;
  } catch (const dnnl::error& e) {
    throw_java(env, "java/lang/IllegalStateException", std::string("oneDNN could not pack a bfloat16 matrix: ") + e.what());
    return JNI_FALSE;
  }
}

JNIEXPORT jlong JNICALL Java_io_longmem_model_compute_Bf16Native_bytes(JNIEnv*, jclass, jlong h) {
  Matrix* w = of(h);
  return w->packed ? static_cast<jlong>(w->blocked_md.get_size()) : static_cast<jlong>(w->plain.size() * 2);
}

// y[m, n] = bf16(x[m, k]) @ W^T in float32; x and y are direct buffers (DJL tensors' own memory).
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_matmul(JNIEnv* env, jclass, jlong h, jobject xb,
    jlong m, jobject yb, jint threads) {
  Matrix* w = of(h);
  const float* x = static_cast<const float*>(env->GetDirectBufferAddress(xb));
  float* y = static_cast<float*>(env->GetDirectBufferAddress(yb));
  if (x == nullptr || y == nullptr || m <= 0 || env->GetDirectBufferCapacity(xb) < m * w->k * 4
      || env->GetDirectBufferCapacity(yb) < m * w->n * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for a bfloat16 matmul");
    return;
  }
  if (threads > 0) omp_set_num_threads(threads);  // this thread's OpenMP teams (oneDNN's too)
  uint16_t* xs = round_activations(x, m * w->k);
  multiply(env, w, xs, y, m, now_ns());
}

// The MLP in one call: y = bf16(silu(g) * u) @ Wdown^T where [g | u] = bf16(x) @ Wgateup^T; the
// gate/up output and its activation stay in this thread's buffers (grown to the largest call, then
// reused), so no float32 tensor of [m, 2 x intermediate] is allocated, split and multiplied per call.
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_mlp(JNIEnv* env, jclass, jlong gate_up, jlong down,
    jobject xb, jlong m, jobject yb, jint threads) {
  Matrix* gu = of(gate_up);
  Matrix* dn = of(down);
  const float* x = static_cast<const float*>(env->GetDirectBufferAddress(xb));
  float* y = static_cast<float*>(env->GetDirectBufferAddress(yb));
  if (x == nullptr || y == nullptr || m <= 0 || gu->n != 2 * dn->k || env->GetDirectBufferCapacity(xb) < m * gu->k * 4
      || env->GetDirectBufferCapacity(yb) < m * dn->n * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers or shapes for a bfloat16 MLP");
    return;
  }
  if (threads > 0) omp_set_num_threads(threads);
  uint16_t* xs = round_activations(x, m * gu->k);
  calls++;  // two matmuls
  int64_t t1 = now_ns();
  float* h = thread_buffer<float, kGateUp>(static_cast<size_t>(m * gu->n));
  if (!multiply(env, gu, xs, h, m, t1)) return;
  int64_t t2 = now_ns();
  uint16_t* act = scratch_b(static_cast<size_t>(m * dn->k));
  swiglu_rows(h, act, m, dn->k);
  int64_t t3 = now_ns();
  ns_round += t3 - t2;
  multiply(env, dn, act, y, m, t3);
}

// c[batch, m, n] = bf16(a[batch, m, k]) @ bf16(b) in float32, b [batch, k, n], or [batch, n, k] read
// transposed (trans_b); all three are contiguous float32 direct buffers.
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_bmm(JNIEnv* env, jclass, jobject ab, jobject bb,
    jobject cb, jlong batch, jlong m, jlong n, jlong k, jboolean trans_b, jint threads) {
  const float* a = static_cast<const float*>(env->GetDirectBufferAddress(ab));
  const float* b = static_cast<const float*>(env->GetDirectBufferAddress(bb));
  float* c = static_cast<float*>(env->GetDirectBufferAddress(cb));
  if (a == nullptr || b == nullptr || c == nullptr || batch <= 0 || m <= 0 || n <= 0 || k <= 0
      || env->GetDirectBufferCapacity(ab) < batch * m * k * 4 || env->GetDirectBufferCapacity(bb) < batch * k * n * 4
      || env->GetDirectBufferCapacity(cb) < batch * m * n * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for a bfloat16 batched matmul");
    return;
  }
  if (threads > 0) omp_set_num_threads(threads);
  auto [as, bs] = round_operands(a, batch * m * k, b, batch * k * n);
  int64_t t1 = now_ns();
  try {
    BmmKey key{batch, m, n, k, trans_b == JNI_TRUE};
    memory::desc a_md({batch, m, k}, memory::data_type::bf16, memory::format_tag::abc);
    memory::desc b_md({batch, k, n}, memory::data_type::bf16,
        key.trans_b ? memory::format_tag::acb : memory::format_tag::abc);
    memory::desc c_md({batch, m, n}, memory::data_type::f32, memory::format_tag::abc);
    dnnl::matmul prim;
    memory::desc pad_md;
    {
      std::lock_guard<std::mutex> lock(bmm_mu);
      auto it = bmm_prims.find(key);
      if (it == bmm_prims.end()) {
        if (bmm_prims.size() >= 256) bmm_prims.clear();
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
        it = bmm_prims.emplace(key, std::make_pair(dnnl::matmul(pd), pd.scratchpad_desc())).first;
      }
      prim = it->second.first;
      pad_md = it->second.second;
    }
    memory am(a_md, engine(), as), bm(b_md, engine(), bs), cm(c_md, engine(), c);
    memory scratchpad(pad_md, engine(), pad(pad_md.get_size()));
    dnnl::stream s(engine());
    prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    s.wait();
    ns_multiply += now_ns() - t1;
  } catch (const dnnl::error& e) {
    throw_java(env, "java/lang/IllegalStateException", std::string("oneDNN bfloat16 batched matmul failed: ") + e.what());
  }
}

// Softmax attention of a prefill call in one pass per block of queries, as the reference's bfloat16
// run computes it: scores = bf16(q) . bf16(k)^T in float32, / scale + mask, floored at `floor`,
// softmax in float32, out = bf16(weights) . bf16(v) in float32. q and out [B, H, L, D]; k and v
// [B, H, N, D]; mask [B, mh, mr, N] with mh 1 or H, mr 1 or L (broadcast). All contiguous float32.
// The score matrix never exists whole: each block's [32, N] scores live in the cache.
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_attend(JNIEnv* env, jclass, jobject qb, jobject kb,
    jobject vb, jobject maskb, jobject outb, jlong batch, jlong heads, jlong len, jlong n, jlong d, jlong mask_heads,
    jlong mask_rows, jfloat scale, jfloat floor, jint threads) {
  const float* q = static_cast<const float*>(env->GetDirectBufferAddress(qb));
  const float* k = static_cast<const float*>(env->GetDirectBufferAddress(kb));
  const float* v = static_cast<const float*>(env->GetDirectBufferAddress(vb));
  const float* mask = static_cast<const float*>(env->GetDirectBufferAddress(maskb));
  float* out = static_cast<float*>(env->GetDirectBufferAddress(outb));
  const int64_t bh = batch * heads;
  if (q == nullptr || k == nullptr || v == nullptr || mask == nullptr || out == nullptr || batch <= 0 || heads <= 0
      || len <= 0 || n <= 0 || d <= 0 || (mask_heads != 1 && mask_heads != heads) || (mask_rows != 1 && mask_rows != len)
      || env->GetDirectBufferCapacity(qb) < bh * len * d * 4 || env->GetDirectBufferCapacity(kb) < bh * n * d * 4
      || env->GetDirectBufferCapacity(vb) < bh * n * d * 4 || env->GetDirectBufferCapacity(outb) < bh * len * d * 4
      || env->GetDirectBufferCapacity(maskb) < batch * mask_heads * mask_rows * n * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for the bfloat16 attention");
    return;
  }
  if (threads > 0) omp_set_num_threads(threads);
  auto [ks, vs] = round_operands(k, bh * n * d, v, bh * n * d);
  int64_t t1 = now_ns();
  try {
    const int64_t block = len < kQueryBlock ? len : kQueryBlock;
    const int64_t blocks = (len + block - 1) / block;
    const int64_t tail = len - (blocks - 1) * block;
    // the primitives (a block and the last, shorter one) are made before the team starts
    auto scores_full = attn_prim(block, n, d, true), out_full = attn_prim(block, n, d, false);
    auto scores_tail = attn_prim(tail, n, d, true), out_tail = attn_prim(tail, n, d, false);
    size_t pad_bytes = std::max({scores_full.second.get_size(), out_full.second.get_size(),
        scores_tail.second.get_size(), out_tail.second.get_size()});
    const memory::desc k_md({d, n}, memory::data_type::bf16, memory::format_tag::ba);
    const memory::desc v_md({n, d}, memory::data_type::bf16, memory::format_tag::ab);
    const int64_t tasks = batch * blocks * heads;  // heads innermost: a thread's blocks share mask rows
    std::atomic<bool> failed{false};
    std::string failure;
    std::mutex failure_mu;
#pragma omp parallel
    {
      // the calling thread's scratch() buffers hold the rounded keys and values meanwhile
      float* s = thread_buffer<float, kScores>(static_cast<size_t>(block * n));
      uint16_t* w = thread_buffer<uint16_t, kWeights>(static_cast<size_t>(block * n));
      uint16_t* qr = thread_buffer<uint16_t, kQueries>(static_cast<size_t>(block * d));
      void* scratch_pad = pad(pad_bytes);
      dnnl::stream stream(engine());
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; t++) {
        if (failed.load()) continue;
        const int64_t h = t % heads, qblock = (t / heads) % blocks, b = t / (heads * blocks);
        const int64_t r0 = qblock * block, m = qblock == blocks - 1 ? tail : block;
        const bool full = m == block;
        const int64_t head = b * heads + h;
        round_range(q + (head * len + r0) * d, qr, m * d);
        try {
          const memory::desc q_md({m, d}, memory::data_type::bf16, memory::format_tag::ab);
          const memory::desc s_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
          const memory::desc w_md({m, n}, memory::data_type::bf16, memory::format_tag::ab);
          const memory::desc o_md({m, d}, memory::data_type::f32, memory::format_tag::ab);
          run(full ? scores_full : scores_tail, stream, q_md, qr, k_md, ks + head * n * d, s_md, s, scratch_pad);
          stream.wait();
          const float* mask_head = mask + (b * mask_heads + (mask_heads == 1 ? 0 : h)) * mask_rows * n;
          for (int64_t i = 0; i < m; i++) {
            softmax_row(s + i * n, mask_head + (mask_rows == 1 ? 0 : r0 + i) * n, w + i * n, n, scale, floor);
          }
          run(full ? out_full : out_tail, stream, w_md, w, v_md, vs + head * n * d, o_md, out + (head * len + r0) * d,
              scratch_pad);
          stream.wait();
        } catch (const dnnl::error& e) {
          std::lock_guard<std::mutex> lock(failure_mu);
          failure = e.what();
          failed = true;
        }
      }
    }
    ns_multiply += now_ns() - t1;
    if (failed.load()) {
      throw_java(env, "java/lang/IllegalStateException", "oneDNN bfloat16 attention failed: " + failure);
    }
  } catch (const dnnl::error& e) {
    throw_java(env, "java/lang/IllegalStateException", std::string("oneDNN bfloat16 attention failed: ") + e.what());
  }
}

// out = in rounded to bfloat16 and widened back to float32: the memory's mem_dtype rounding in one
// pass (DJL cannot hold bfloat16, and composing it from float32 ops takes twenty).
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_roundTrip(JNIEnv* env, jclass, jobject inb,
    jobject outb, jlong count) {
  const float* in = static_cast<const float*>(env->GetDirectBufferAddress(inb));
  float* out = static_cast<float*>(env->GetDirectBufferAddress(outb));
  if (in == nullptr || out == nullptr || count < 0 || env->GetDirectBufferCapacity(inb) < count * 4
      || env->GetDirectBufferCapacity(outb) < count * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for bfloat16 rounding");
    return;
  }
  split_over_team(count, [&](int64_t b, int64_t e) { widen_range(in + b, out + b, e - b); });
}

// Rotary embedding (LLaMA's half-split layout) of x [B, H, T, D] by positions pos [B, T] (int64)
// from the float32 tables cos, sin [positions, D]: out = x * cos + rotate_half(x) * sin, the same
// float32 products and sum as the DJL ops, in one pass instead of six.
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_rope(JNIEnv* env, jclass, jobject xb, jobject posb,
    jobject cosb, jobject sinb, jobject outb, jlong batch, jlong heads, jlong len, jlong d, jlong positions,
    jint threads) {
  const float* x = static_cast<const float*>(env->GetDirectBufferAddress(xb));
  const int64_t* pos = static_cast<const int64_t*>(env->GetDirectBufferAddress(posb));
  const float* cs = static_cast<const float*>(env->GetDirectBufferAddress(cosb));
  const float* sn = static_cast<const float*>(env->GetDirectBufferAddress(sinb));
  float* out = static_cast<float*>(env->GetDirectBufferAddress(outb));
  const int64_t rows = batch * heads * len;
  if (x == nullptr || pos == nullptr || cs == nullptr || sn == nullptr || out == nullptr || d % 2 != 0
      || env->GetDirectBufferCapacity(xb) < rows * d * 4 || env->GetDirectBufferCapacity(outb) < rows * d * 4
      || env->GetDirectBufferCapacity(posb) < batch * len * 8 || env->GetDirectBufferCapacity(cosb) < positions * d * 4
      || env->GetDirectBufferCapacity(sinb) < positions * d * 4) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for the rotary embedding");
    return;
  }
  for (int64_t i = 0; i < batch * len; i++) {
    if (pos[i] < 0 || pos[i] >= positions) {
      throw_java(env, "java/lang/IllegalArgumentException", "a rotary position outside the table");
      return;
    }
  }
  if (threads > 0) omp_set_num_threads(threads);
  const int64_t half = d / 2;
#pragma omp parallel for schedule(static) if (rows * d > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t b = r / (heads * len), t = r % len;
    const int64_t p = pos[b * len + t];
    const float* xr = x + r * d;
    const float* c = cs + p * d;
    const float* sr = sn + p * d;
    float* o = out + r * d;
    for (int64_t j = 0; j < half; j++) {
      float a = xr[j] * c[j], rot = -xr[j + half] * sr[j];
      o[j] = a + rot;
    }
    for (int64_t j = half; j < d; j++) {
      float a = xr[j] * c[j], rot = xr[j - half] * sr[j];
      o[j] = a + rot;
    }
  }
}

JNIEXPORT jboolean JNICALL Java_io_longmem_model_compute_Bf16Native_bmmSupported(JNIEnv*, jclass) {
  try {
    memory::desc a({1, 16, 16}, memory::data_type::bf16, memory::format_tag::abc);
    memory::desc c({1, 16, 16}, memory::data_type::f32, memory::format_tag::abc);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), engine());
    return JNI_TRUE;
  } catch (const dnnl::error&) {
    return JNI_FALSE;
  }
}

// {calls, ns rounding activations, ns multiplying} since the last call; resets them.
JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_takeStats(JNIEnv* env, jclass, jlongArray out) {
  jlong v[3] = {calls.exchange(0), ns_round.exchange(0), ns_multiply.exchange(0)};
  env->SetLongArrayRegion(out, 0, 3, v);
}

JNIEXPORT void JNICALL Java_io_longmem_model_compute_Bf16Native_free(JNIEnv*, jclass, jlong h) {
  delete of(h);
}

// Copies `bytes` between two direct buffers `times` times: the memory bandwidth the decode floor uses.
JNIEXPORT jdouble JNICALL Java_io_longmem_model_compute_Bf16Native_copySeconds(JNIEnv* env, jclass, jobject a,
    jobject b, jlong bytes, jint times) {
  void* pa = env->GetDirectBufferAddress(a);
  void* pb = env->GetDirectBufferAddress(b);
  if (pa == nullptr || pb == nullptr || env->GetDirectBufferCapacity(a) < bytes || env->GetDirectBufferCapacity(b) < bytes) {
    throw_java(env, "java/lang/IllegalArgumentException", "bad buffers for a copy");
    return 0;
  }
  double t0 = omp_get_wtime();
  for (int i = 0; i < times; i++) std::memcpy(i % 2 ? pa : pb, i % 2 ? pb : pa, bytes);
  return omp_get_wtime() - t0;
}

}  // extern "C"
