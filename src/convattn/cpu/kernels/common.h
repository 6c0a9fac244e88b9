// The one header of the CPU kernel library (MindSpore `ops.Custom(func_type="aot")` kernels): what every operator
// family's source (window.cc, elementwise.cc, norm.cc, conv.cc, gemm_ops.cc, batchnorm.cc) shares.
//
// * The runtime state (runtime.cc): the GEMM entry point and the thread count, both set through the exported
//   `convattn_init` / `convattn_set_threads` (the library reads no environment variable), and a persistent
//   thread pool (ParallelFor, ParallelChunks) created on first use and resized when the thread count changes.
// * Argument checks that record why a kernel refused its inputs (Args, Fail): the export macros prefix the
//   kernel's name, keep the text for `convattn_last_error()` and write it to stderr once.
// * Shared arithmetic: float32 checks, element counts, the vectorisable exp, the 8-lane sums, the chunked
//   reductions (one partial per chunk, added in chunk order: a result depends on the thread count only).
//
// Everything here has hidden visibility (the library is built with -fvisibility=hidden); only the
// CONVATTN_EXPORT* kernels and the convattn_* control functions of runtime.cc are exported.
// Written for C++17 as GCC 9 implements it (no __builtin_bit_cast, no C++20 library).
#ifndef CONVATTN_KERNELS_COMMON_H_
#define CONVATTN_KERNELS_COMMON_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <vector>

#define CONVATTN_API extern "C" __attribute__((visibility("default")))

namespace convattn {

// ---- the runtime state (runtime.cc) ----

// The row-major GEMM every kernel calls, with oneDNN's `dnnl_sgemm` signature and semantics:
// C[M,N] = alpha op(A) op(B) + beta C, op = transpose for 'T'; returns 0 on success.
typedef int (*SgemmFn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                       float, float *, int64_t);

// The GEMM given to convattn_init (a CBLAS sgemm is adapted to the signature above), or null.
SgemmFn Sgemm();

// The threads a kernel splits its work over (the caller's included): the number convattn_init or
// convattn_set_threads gave, else the CPUs this process may run on; 1 to 64.
int NumThreads();

// Runs task(ctx, i) for every i in [0, count) on the pool (the calling thread takes part) and returns when all
// have run. Items are handed out in order from a shared counter; an exception thrown by a task is rethrown here.
void RunParallel(int64_t count, void (*task)(void *, int64_t), void *ctx);

template <typename F>
void ParallelFor(int64_t count, F fn) {
  if (count <= 0) return;
  if (count == 1 || NumThreads() <= 1) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  RunParallel(count, [](void *ctx, int64_t i) { (*static_cast<F *>(ctx))(i); }, &fn);
}

// ---- errors as text ----

// Records why the current kernel refused its inputs (printf format) and returns `code`; the export wrapper adds
// the kernel's name. Only the first message of a call is kept.
int Fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Called by the export macros around every kernel.
void BeginKernel(const char *name);
int EndKernel(const char *name, int code);
int KernelException(const char *name, const char *what);

inline bool IsFloat32(const char *dtype) {
  return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0;
}

// The kernel's tensors (inputs, then outputs) with their names for the messages, e.g. "x w b y".
struct Args {
  const char *names;
  int nparam;
  const int *ndims;
  int64_t *const *shapes;
  const char *const *dtypes;

  // the name of tensor i (a thread-local buffer per slot: two names fit in one message)
  const char *Name(int i, int slot = 0) const;
  // "(2, 3, 4)": the shape of tensor i (thread-local buffer per slot)
  const char *Shape(int i, int slot = 0) const;

  bool Count(int expected) const;                     // code 1: "got 3 tensors, expected 4 (x, w, b, y)"
  bool Rank(int i, int expected) const;               // code 1: "x has 3 dims, expected 2"
  bool MinRank(int i, int expected) const;            // code 1: "x has 0 dims, expected at least 1"
  bool Float32(int i) const;                          // code 2: "x is float16, expected float32"
  bool Float32(std::initializer_list<int> which) const;
  bool AllFloat32() const;
  bool Int32(int i) const;                            // code 2: "d is float32, expected int32"
  // code 3: "<what>; shapes x (..), w (..), ..." (every tensor's shape)
  int Mismatch(const char *what) const;
};

// ---- shared arithmetic ----

// 8 floats in one vector register (AVX2 where the build has it; two SSE registers otherwise); unaligned access
typedef float V8 __attribute__((vector_size(32)));

inline V8 Load8(const float *p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store8(float *p, V8 v) { std::memcpy(p, &v, sizeof(v)); }

inline int64_t NumElements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// exp for the softmax, written so the compiler vectorises it (glibc's expf does not vectorise without
// -ffast-math): Cody-Waite range reduction to r in [-ln2/2, ln2/2], degree-6 polynomial, 2^n by exponent
// bits. Relative error below 2e-7 (float32 rounding) on [-87, 88]; inputs below -87 give 0.
inline float ExpApprox(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));  // a bit cast GCC 9 compiles (no __builtin_bit_cast before GCC 11)
  return p * scale;
}

// Eight independent accumulators, so that the loops vectorise without reassociating a single sum.
inline float SumOf(const float *__restrict__ x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  float s = 0.0f;
  for (; i < n; ++i) s += x[i];
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

inline float SquaredDeviation(const float *__restrict__ x, float mean, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float d = x[i + j] - mean;
      acc[j] += d * d;
    }
  float s = 0.0f;
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

// Splits [0, count) into `chunks` contiguous ranges run in parallel: fn(chunk, begin, end). Reductions across
// rows (LayerNorm's dgamma/dbeta, a bias gradient) keep one partial per chunk and add the partials in chunk
// order afterwards, so a result depends only on the thread count, never on scheduling.
template <typename F>
void ParallelChunks(int64_t count, int64_t chunks, F fn) {
  ParallelFor(chunks, [&](int64_t k) {
    const int64_t begin = count * k / chunks, end = count * (k + 1) / chunks;
    if (begin < end) fn(k, begin, end);
  });
}

// out[j] = sum over chunks (in chunk order) of partial[chunk * stride + j], j < width
inline void SumChunks(const float *partial, int64_t chunks, int64_t stride, int64_t width, float *out) {
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t j = 0; j < width; ++j) out[j] += partial[chunk * stride + j];
}

inline int64_t ReductionChunks(int64_t count) {
  return std::max<int64_t>(1, std::min<int64_t>(NumThreads(), count));
}

// SumChunks over a wide row, its columns split over the threads (blocks of at least 4096; same sums, same order)
inline void SumChunksParallel(const float *partial, int64_t chunks, int64_t stride, int64_t width, float *out) {
  ParallelChunks(width, ReductionChunks(width / 4096 + 1), [&](int64_t, int64_t begin, int64_t end) {
    SumChunks(partial + begin, chunks, stride, end - begin, out + begin);
  });
}

// acc[j] += sum of rows [begin, end) of a row-major (rows, n) matrix
inline void AddRows(const float *m, int64_t begin, int64_t end, int64_t n, float *__restrict__ acc) {
  for (int64_t r = begin; r < end; ++r) {
    const float *__restrict__ row = m + r * n;
    for (int64_t j = 0; j < n; ++j) acc[j] += row[j];
  }
}

// The GEMM for a kernel that needs one: Sgemm(), or null after recording why (code 4).
inline SgemmFn RequireSgemm() {
  SgemmFn fn = Sgemm();
  if (fn == nullptr) Fail(4, "no GEMM: convattn_init was not given an sgemm (the runtime's gemm is unavailable)");
  return fn;
}

// A GEMM call's status collected over the work items: code 5 with the first failing status.
inline int GemmStatus(const std::vector<int> &status) {
  for (int st : status)
    if (st != 0) return Fail(5, "sgemm returned status %d", st);
  return 0;
}

}  // namespace convattn

// ---- the exported kernels: MindSpore's AOT signature, a name and what the kernel refused recorded as text ----
#define CONVATTN_KERNEL_BODY(name, call)                                \
  (void)stream;                                                         \
  (void)extra;                                                          \
  ::convattn::BeginKernel(#name);                                       \
  try {                                                                 \
    return ::convattn::EndKernel(#name, call);                          \
  } catch (const std::exception &e) {                                   \
    return ::convattn::KernelException(#name, e.what());                \
  } catch (...) {                                                       \
    return ::convattn::KernelException(#name, "unknown exception");     \
  }

// a kernel with two template-like parameters after the common arguments (mode, stride)
#define CONVATTN_EXPORT(name, impl, mode, stride)                                                        \
  CONVATTN_API int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,   \
                        void *stream, void *extra) {                                                    \
    CONVATTN_KERNEL_BODY(name, impl(nparam, params, ndims, shapes, dtypes, mode, stride))               \
  }

#define CONVATTN_EXPORT_PLAIN(name, impl)                                                                \
  CONVATTN_API int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,   \
                        void *stream, void *extra) {                                                    \
    CONVATTN_KERNEL_BODY(name, impl(nparam, params, ndims, shapes, dtypes))                             \
  }

// the kernels with one implementation for two layouts (a flag after the common arguments)
#define CONVATTN_EXPORT_FLAG(name, impl, flag)                                                           \
  CONVATTN_API int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,   \
                        void *stream, void *extra) {                                                    \
    CONVATTN_KERNEL_BODY(name, impl(nparam, params, ndims, shapes, dtypes, flag))                       \
  }

#endif  // CONVATTN_KERNELS_COMMON_H_
