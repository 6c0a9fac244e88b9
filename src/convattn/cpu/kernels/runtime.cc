// The library's runtime state and its exported control functions (called by convattn/cpu/runtime.py through
// ctypes, on the same handle MindSpore's ops.Custom gets for the same path):
//
//   int  convattn_init(void *sgemm, int gemm_kind, int num_threads)
//        sgemm: the GEMM entry point (null: none); gemm_kind: 0 none, 1 oneDNN's dnnl_sgemm (row-major, int64
//        sizes, returns a status), 2 a CBLAS cblas_sgemm (order argument, int sizes); num_threads as below.
//        Returns 0, or -1 for an unknown gemm_kind (see convattn_last_error).
//   int  convattn_set_threads(int n)   n >= 1: that many threads (capped at 64); n <= 0: the CPUs this process
//                                      may run on (its affinity, read at each kernel call). Returns the count now.
//   int  convattn_get_threads(void)
//   int  convattn_pool_workers(void)   worker threads the pool holds now (the calling thread is not one)
//   const char *convattn_last_error(void)   the last refusal, "kernel: why" ("" when none), process-wide
//   void convattn_clear_error(void)
//   double convattn_selftest(void)     sum of i * ExpApprox(0) for i < 1000 through ParallelFor: 499500
//   const char *convattn_build_key(void)   the key the library was built under (-DCONVATTN_BUILD_KEY)
//
// The pool: NumThreads() - 1 persistent workers waiting on a condition variable; a kernel's ParallelFor hands its
// items out from an atomic counter, the calling thread takes part, and one job runs at a time (a second kernel
// called concurrently waits). A ParallelFor inside a task runs serially. Nothing is allocated per call. After a
// fork the child drops the parent's pool (its threads do not exist there) and builds a new one on first use.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <thread>

#include "common.h"

#ifndef CONVATTN_BUILD_KEY
#define CONVATTN_BUILD_KEY "unkeyed"
#endif

namespace convattn {
namespace {

constexpr int kMaxThreads = 64;

// ---- GEMM ----

typedef void (*CblasSgemmFn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                             float *, int);
std::atomic<SgemmFn> g_sgemm{nullptr};
std::atomic<CblasSgemmFn> g_cblas{nullptr};

// The dnnl_sgemm signature over a CBLAS sgemm (CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112).
int CblasAdapter(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  for (int64_t v : {m, n, k, lda, ldb, ldc})
    if (v < 0 || v > INT_MAX) return 2;  // beyond 32-bit BLAS sizes
  const auto trans = [](char t) { return (t == 'T' || t == 't') ? 112 : 111; };
  g_cblas.load(std::memory_order_acquire)(101, trans(transa), trans(transb), static_cast<int>(m),
                                          static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
                                          b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  return 0;
}

// ---- threads ----

std::atomic<int> g_threads{0};  // 0: the process's CPU affinity

int AffinityThreads() {
  cpu_set_t set;
  int n = 1;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    n = CPU_COUNT(&set);
  } else {
    n = static_cast<int>(std::thread::hardware_concurrency());
  }
  return n;
}

thread_local bool t_in_pool = false;  // a pool worker, or a caller running a job: nested ParallelFor is serial

struct Pool {
  std::mutex job_mu;  // held by the caller for a whole job
  std::mutex mu;
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  uint64_t generation = 0;  // one per job (and per shutdown)
  bool stop = false;
  int active = 0;  // workers still in the current job
  void (*task)(void *, int64_t) = nullptr;
  void *ctx = nullptr;
  int64_t count = 0;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};

  void RunItems() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) return;
      try {
        task(ctx, i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }

  void Worker(uint64_t seen) {
    t_in_pool = true;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        wake.wait(lk, [&] { return generation != seen; });
        seen = generation;
        if (stop) return;
      }
      RunItems();
      std::lock_guard<std::mutex> lk(mu);
      if (--active == 0) done.notify_one();
    }
  }

  // with job_mu held
  void Resize(int size) {
    if (static_cast<int>(workers.size()) == size) return;
    if (!workers.empty()) {
      {
        std::lock_guard<std::mutex> lk(mu);
        stop = true;
        ++generation;
      }
      wake.notify_all();
      for (auto &t : workers) t.join();
      workers.clear();
      stop = false;
    }
    workers.reserve(static_cast<size_t>(size));
    for (int id = 0; id < size; ++id) workers.emplace_back(&Pool::Worker, this, generation);
  }

  void Run(int threads, int64_t n, void (*fn)(void *, int64_t), void *c) {
    std::unique_lock<std::mutex> job(job_mu);
    Resize(threads - 1);
    {
      std::lock_guard<std::mutex> lk(mu);
      task = fn;
      ctx = c;
      count = n;
      next.store(0, std::memory_order_relaxed);
      failed.store(false, std::memory_order_relaxed);
      error = nullptr;
      active = static_cast<int>(workers.size());
      ++generation;
    }
    wake.notify_all();
    t_in_pool = true;
    RunItems();
    t_in_pool = false;
    std::exception_ptr err;
    {
      std::unique_lock<std::mutex> lk(mu);
      done.wait(lk, [&] { return active == 0; });
      err = error;
      error = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }
};

std::mutex g_pool_mu;       // guards g_pool (creation, and the fork handlers)
Pool *g_pool = nullptr;     // created on first use, never destroyed (a library may be unloaded only at exit)
std::once_flag g_atfork_once;

void PrepareFork() {
  g_pool_mu.lock();
  if (g_pool != nullptr) g_pool->job_mu.lock();  // no job runs across the fork
}

void ParentAfterFork() {
  if (g_pool != nullptr) g_pool->job_mu.unlock();
  g_pool_mu.unlock();
}

void ChildAfterFork() {
  g_pool = nullptr;  // the parent's workers do not exist here: leak its pool, build a new one on first use
  g_pool_mu.unlock();
}

Pool *GetPool() {
  std::call_once(g_atfork_once, [] { pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork); });
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (g_pool == nullptr) g_pool = new Pool();
  return g_pool;
}

// ---- errors ----

constexpr size_t kMessageSize = 512;
thread_local char t_message[kMessageSize];  // the current kernel call's refusal ("" when none)
std::mutex g_error_mu;
char g_last_error[kMessageSize + 64] = "";
constexpr int kPrintedSlots = 256;
uint64_t g_printed[kPrintedSlots];  // hashes of the messages already written to stderr
int g_printed_count = 0;

uint64_t Hash(const char *s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 1099511628211ull;
  return h;
}

void Record(const char *name, int code, const char *why) {
  std::lock_guard<std::mutex> lk(g_error_mu);
  std::snprintf(g_last_error, sizeof(g_last_error), "%s: %s", name, why);
  const uint64_t h = Hash(g_last_error);
  for (int i = 0; i < g_printed_count; ++i)
    if (g_printed[i] == h) return;
  if (g_printed_count < kPrintedSlots) g_printed[g_printed_count++] = h;
  std::fprintf(stderr, "convattn kernel error (code %d): %s\n", code, g_last_error);
  std::fflush(stderr);
}

const char *DefaultReason(int code) {
  switch (code) {
    case 1: return "wrong number of tensors or tensor ranks";
    case 2: return "a tensor has the wrong dtype (float32 expected)";
    case 3: return "the tensor shapes do not fit together";
    case 4: return "no GEMM (convattn_init was not given one)";
    case 5: return "the GEMM failed";
    default: return "failed";
  }
}

}  // namespace

SgemmFn Sgemm() { return g_sgemm.load(std::memory_order_acquire); }

int NumThreads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return std::max(1, std::min(n > 0 ? n : AffinityThreads(), kMaxThreads));
}

void RunParallel(int64_t count, void (*task)(void *, int64_t), void *ctx) {
  const int threads = static_cast<int>(std::min<int64_t>(NumThreads(), count));
  if (threads <= 1 || t_in_pool) {
    for (int64_t i = 0; i < count; ++i) task(ctx, i);
    return;
  }
  // the pool keeps NumThreads() - 1 workers whatever this job's count: a small job does not shrink it
  Pool *pool = GetPool();
  pool->Run(std::max(threads, NumThreads()), count, task, ctx);
}

int Fail(int code, const char *fmt, ...) {
  if (t_message[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(t_message, kMessageSize, fmt, ap);
    va_end(ap);
  }
  return code;
}

void BeginKernel(const char *) { t_message[0] = '\0'; }

int EndKernel(const char *name, int code) {
  if (code != 0) Record(name, code, t_message[0] != '\0' ? t_message : DefaultReason(code));
  return code;
}

int KernelException(const char *name, const char *what) {
  char why[kMessageSize];
  std::snprintf(why, sizeof(why), "exception: %s", what);
  Record(name, 6, why);
  return 6;
}

// ---- Args ----

namespace {
constexpr int kNameSlots = 2;
thread_local char t_names[kNameSlots][64];
thread_local char t_shapes[kNameSlots][160];
}  // namespace

const char *Args::Name(int i, int slot) const {
  char *out = t_names[slot % kNameSlots];
  const char *p = names;
  for (int k = 0; k < i && p != nullptr; ++k) {
    p = std::strchr(p, ' ');
    if (p != nullptr) ++p;
  }
  if (p == nullptr || *p == '\0') {
    std::snprintf(out, 64, "tensor %d", i);
  } else {
    size_t len = std::strcspn(p, " ");
    len = std::min<size_t>(len, 63);
    std::memcpy(out, p, len);
    out[len] = '\0';
  }
  return out;
}

const char *Args::Shape(int i, int slot) const {
  char *out = t_shapes[slot % kNameSlots];
  size_t used = 0;
  out[used++] = '(';
  out[used] = '\0';
  for (int d = 0; d < ndims[i] && used < 140; ++d)
    used += std::snprintf(out + used, 160 - used, d ? ", %lld" : "%lld", static_cast<long long>(shapes[i][d]));
  std::snprintf(out + used, 160 - used, ")");
  return out;
}

bool Args::Count(int expected) const {
  if (nparam == expected) return true;
  Fail(1, "got %d tensors, expected %d (%s)", nparam, expected, names);
  return false;
}

bool Args::Rank(int i, int expected) const {
  if (ndims[i] == expected) return true;
  Fail(1, "%s has %d dims, expected %d", Name(i), ndims[i], expected);
  return false;
}

bool Args::MinRank(int i, int expected) const {
  if (ndims[i] >= expected) return true;
  Fail(1, "%s has %d dims, expected at least %d", Name(i), ndims[i], expected);
  return false;
}

bool Args::Float32(int i) const {
  if (IsFloat32(dtypes[i])) return true;
  Fail(2, "%s is %s, expected float32", Name(i), dtypes[i]);
  return false;
}

bool Args::Float32(std::initializer_list<int> which) const {
  for (int i : which)
    if (!Float32(i)) return false;
  return true;
}

bool Args::AllFloat32() const {
  for (int i = 0; i < nparam; ++i)
    if (!Float32(i)) return false;
  return true;
}

bool Args::Int32(int i) const {
  if (std::strcmp(dtypes[i], "int32") == 0) return true;
  Fail(2, "%s is %s, expected int32", Name(i), dtypes[i]);
  return false;
}

int Args::Mismatch(const char *what) const {
  char buf[kMessageSize];
  size_t used = static_cast<size_t>(std::snprintf(buf, sizeof(buf), "%s; shapes", what));
  for (int i = 0; i < nparam && used < sizeof(buf) - 1; ++i)
    used += static_cast<size_t>(
        std::snprintf(buf + used, sizeof(buf) - used, "%s %s %s", i ? "," : "", Name(i), Shape(i)));
  return Fail(3, "%s", buf);
}

}  // namespace convattn

// ---- the exported control functions ----

CONVATTN_API int convattn_set_threads(int n) {
  convattn::g_threads.store(n > 0 ? std::min(n, convattn::kMaxThreads) : 0, std::memory_order_relaxed);
  return convattn::NumThreads();
}

CONVATTN_API int convattn_get_threads(void) { return convattn::NumThreads(); }

CONVATTN_API int convattn_pool_workers(void) {
  std::lock_guard<std::mutex> lk(convattn::g_pool_mu);
  if (convattn::g_pool == nullptr) return 0;
  std::lock_guard<std::mutex> job(convattn::g_pool->job_mu);
  return static_cast<int>(convattn::g_pool->workers.size());
}

CONVATTN_API int convattn_init(void *sgemm, int gemm_kind, int num_threads) {
  using convattn::g_cblas;
  using convattn::g_sgemm;
  switch (gemm_kind) {
    case 0:
      g_sgemm.store(nullptr, std::memory_order_release);
      break;
    case 1:
      g_sgemm.store(reinterpret_cast<convattn::SgemmFn>(sgemm), std::memory_order_release);
      break;
    case 2:
      g_cblas.store(reinterpret_cast<convattn::CblasSgemmFn>(sgemm), std::memory_order_release);
      g_sgemm.store(sgemm != nullptr ? &convattn::CblasAdapter : nullptr, std::memory_order_release);
      break;
    default:
      convattn::BeginKernel("convattn_init");
      convattn::Fail(-1, "unknown gemm_kind %d (0 none, 1 dnnl_sgemm, 2 cblas_sgemm)", gemm_kind);
      convattn::EndKernel("convattn_init", -1);
      return -1;
  }
  convattn_set_threads(num_threads);
  return 0;
}

CONVATTN_API const char *convattn_last_error(void) {
  // the buffer only grows stale, never shorter than its terminator: a reader sees one whole message
  return convattn::g_last_error;
}

CONVATTN_API void convattn_clear_error(void) {
  std::lock_guard<std::mutex> lk(convattn::g_error_mu);
  convattn::g_last_error[0] = '\0';
}

CONVATTN_API const char *convattn_build_key(void) { return CONVATTN_BUILD_KEY; }

CONVATTN_API double convattn_selftest(void) {
  std::vector<double> part(1000, 0.0);
  convattn::ParallelFor(1000, [&](int64_t i) { part[static_cast<size_t>(i)] = static_cast<double>(i) * convattn::ExpApprox(0.0f); });
  double s = 0.0;
  for (double v : part) s += v;
  return s;  // 499500
}
