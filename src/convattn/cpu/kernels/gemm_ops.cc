// The kernels built on the runtime's GEMM (common.h: Sgemm(), set by convattn_init): the Dense layer and
// multi-head softmax attention, each with its gradient. The GEMM runs single-threaded in each call; the rows of
// the outputs are split over the library's thread pool, so every output element is computed by one call.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

// A Dense layer as one GEMM with its gradient, through oneDNN's sgemm from a private copy of MindSpore's own
// oneDNN library (MindSpore's oneDNN is capped at AVX2 by the process's ONEDNN_MAX_CPU_ISA, which its
// convolutions need; the copy, loaded separately, is set to AVX-512 by the Python side before first use):
//   LINEAR      (x[M,K], w[N,K], b[N])  -> y[M,N]            y = x w^T + b
//   LINEAR_GRAD (x, w, dy[M,N])         -> dx, dw, db        dx = dy w, dw = dy^T x, db = sum_M dy
// The GEMM is the one convattn_init was given (convattn/cpu/gemm.py loads and configures the copy and passes its
// dnnl_sgemm). The copy runs single-threaded (oneDNN's threadpool build without a pool); the rows of y and dx,
// and the rows of dw, are split over the library's threads, so every output element is computed by one call.
int Linear(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x w b y", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 2) || !args.Rank(1, 2)) return 1;
  if (!args.Float32({0, 1, 2, 3})) return 2;
  const int64_t m = shapes[0][0], k = shapes[0][1], n = shapes[1][0];
  if (shapes[1][1] != k || NumElements(ndims[2], shapes[2]) != n)
    return args.Mismatch("expected x (M, K), w (N, K), b of N values");
  SgemmFn sgemm = RequireSgemm();
  if (sgemm == nullptr) return 4;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *b = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  std::vector<int> status(static_cast<size_t>(ReductionChunks(m)), 0);
  ParallelChunks(m, static_cast<int64_t>(status.size()), [&](int64_t chunk, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) std::memcpy(y + r * n, b, sizeof(float) * n);
    status[chunk] = sgemm('N', 'T', end - begin, n, k, 1.0f, x + begin * k, k, w, k, 1.0f, y + begin * n, n);
  });
  return GemmStatus(status);
}

int LinearGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x w dy dx dw db", nparam, ndims, shapes, dtypes};
  if (!args.Count(6) || !args.Rank(0, 2) || !args.Rank(1, 2) || !args.Rank(2, 2)) return 1;
  if (!args.AllFloat32()) return 2;
  const int64_t m = shapes[0][0], k = shapes[0][1], n = shapes[1][0];
  if (shapes[1][1] != k || shapes[2][0] != m || shapes[2][1] != n)
    return args.Mismatch("expected x (M, K), w (N, K), dy (M, N)");
  SgemmFn sgemm = RequireSgemm();
  if (sgemm == nullptr) return 4;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  float *dw = static_cast<float *>(params[4]);
  float *db = static_cast<float *>(params[5]);
  const int64_t chunks_m = ReductionChunks(m), chunks_n = ReductionChunks(n);
  std::vector<int> status(static_cast<size_t>(chunks_m + chunks_n), 0);
  std::vector<float> partial(static_cast<size_t>(chunks_m * n), 0.0f);
  ParallelChunks(m, chunks_m, [&](int64_t chunk, int64_t begin, int64_t end) {  // dx rows, db partials
    status[chunk] = sgemm('N', 'N', end - begin, k, n, 1.0f, dy + begin * n, n, w, k, 0.0f, dx + begin * k, k);
    AddRows(dy, begin, end, n, partial.data() + chunk * n);
  });
  ParallelChunks(n, chunks_n, [&](int64_t chunk, int64_t begin, int64_t end) {  // dw rows
    status[chunks_m + chunk] =
        sgemm('T', 'N', end - begin, k, m, 1.0f, dy + begin, n, x, k, 0.0f, dw + begin * k, k);
  });
  SumChunks(partial.data(), chunks_m, n, n, db);
  return GemmStatus(status);
}

// Multi-head softmax attention with its gradient, its matrix products through the same private sgemm, reading
// q, k and v in the layout the projections write them (no head transposes):
//   ATTENTION_PACKED (qkv[G,N,3C], addend, scale[1])          -> out[G,N,C], p[G,H,N,N]
//   ATTENTION_SPLIT  (q[G,N,C], kv[G,M,2C], addend, scale[1]) -> out[G,N,C], p[G,H,N,M]
// Head h of q / k / v is the column block [h*D, (h+1)*D) of its C columns (packed: q, k, v one after the other
// in qkv's 3C; split: k, v in kv's 2C), H = p's second axis, D = C / H;
//   p[g,h] = softmax_rows(scale * q_h k_h^T + addend[g mod A, h or 0]),   out[g,:,h*D:(h+1)*D] = p[g,h] v_h.
// addend: (A, 1 or H, N, M) added to the logits (Swin's relative position bias and shifted-window mask, summed
// in Python on the small tensor); a one-element addend is a constant shift, which the softmax ignores.
// The gradients (*_GRAD: the forward's inputs, p and dout -> dqkv or dq, dkv, and daddend):
//   dp = dout_h v_h^T,  ds = p * (dp - rowsum(dp * p)),  dq_h = scale ds k_h,  dk_h = scale ds^T q_h,
//   dv_h = p^T dout_h,  daddend[a, h or 0] = sum over the g with g mod A = a of ds (zero for one element).
// The forward splits the query rows of every (g, h) into blocks over the threads; the gradient runs each (g, h)
// on one thread, and daddend keeps one partial per thread chunk, added in chunk order.
struct AttentionGeometry {
  int64_t g, n, m, heads, d, c;      // groups (batch x windows), query / key tokens, heads, head width, C
  int64_t q_stride, kv_stride;       // row strides of the q and kv sources (3C packed; C and 2C split)
  int64_t k_off, v_off;              // column offsets of k and v in the kv source
  int64_t a_count, a_heads;          // addend (A, 1 or H, N, M); a_count 0: no addend
};

// false after recording why (code 3)
bool ReadAttention(const Args &args, bool packed, int nparam, int64_t heads, AttentionGeometry *geo) {
  const int *ndims = args.ndims;
  int64_t *const *shapes = args.shapes;
  for (int i = 0; i < nparam; ++i)
    if (!IsFloat32(args.dtypes[i])) {
      Fail(3, "%s is %s, expected float32", args.Name(i), args.dtypes[i]);
      return false;
    }
  const int src = packed ? 1 : 2;  // index of the addend
  const char *layout = packed ? "expected qkv (G, N, 3C), addend (A, 1 or H, N, N) or one value, p (G, H, N, N), "
                                "H dividing C"
                              : "expected q (G, N, C), kv (G, M, 2C), addend (A, 1 or H, N, M) or one value, "
                                "p (G, H, N, M), H dividing C";
  if (ndims[0] != 3 || ndims[src - 1] != 3 || ndims[src] != 4 || heads < 1) {
    args.Mismatch(layout);
    return false;
  }
  AttentionGeometry a{};
  a.g = shapes[0][0];
  a.n = shapes[0][1];
  if (packed) {
    if (shapes[0][2] % 3 != 0) {
      args.Mismatch(layout);
      return false;
    }
    a.c = shapes[0][2] / 3;
    a.m = a.n;
    a.q_stride = a.kv_stride = 3 * a.c;
    a.k_off = a.c;
    a.v_off = 2 * a.c;
  } else {
    a.c = shapes[0][2];
    if (shapes[1][0] != a.g || shapes[1][2] != 2 * a.c) {
      args.Mismatch(layout);
      return false;
    }
    a.m = shapes[1][1];
    a.q_stride = a.c;
    a.kv_stride = 2 * a.c;
    a.k_off = 0;
    a.v_off = a.c;
  }
  if (a.c % heads != 0) {
    args.Mismatch(layout);
    return false;
  }
  a.heads = heads;
  a.d = a.c / heads;
  const int64_t *ad = shapes[src];
  if (NumElements(4, ad) == 1) {
    a.a_count = a.a_heads = 0;
  } else {
    if (ad[0] < 1 || a.g % ad[0] != 0 || (ad[1] != 1 && ad[1] != heads) || ad[2] != a.n || ad[3] != a.m) {
      args.Mismatch(layout);
      return false;
    }
    a.a_count = ad[0];
    a.a_heads = ad[1];
  }
  *geo = a;
  return true;
}

inline const float *AddendOf(const float *addend, const AttentionGeometry &a, int64_t g, int64_t h) {
  return addend + ((g % a.a_count) * a.a_heads + (a.a_heads == 1 ? 0 : h)) * a.n * a.m;
}

// rows [r0, r1) of p[g,h] from the logits already in them: + addend, softmax
void SoftmaxRows(float *p, const float *add, int64_t r0, int64_t r1, int64_t m) {
  for (int64_t r = r0; r < r1; ++r) {
    float *__restrict__ row = p + r * m;
    if (add != nullptr) {
      const float *__restrict__ ar = add + r * m;
      for (int64_t j = 0; j < m; ++j) row[j] += ar[j];
    }
    float mx = row[0];
    for (int64_t j = 1; j < m; ++j) mx = std::max(mx, row[j]);
    for (int64_t j = 0; j < m; ++j) row[j] = ExpApprox(row[j] - mx);
    const float inv = 1.0f / SumOf(row, m);
    for (int64_t j = 0; j < m; ++j) row[j] *= inv;
  }
}

int Attention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool packed) {
  const int inputs = packed ? 3 : 4;
  const Args args{packed ? "qkv addend scale out p" : "q kv addend scale out p", nparam, ndims, shapes, dtypes};
  if (!args.Count(inputs + 2) || !args.Rank(inputs + 1, 4)) return 1;
  AttentionGeometry a;
  if (!ReadAttention(args, packed, nparam, shapes[inputs + 1][1], &a)) return 3;
  SgemmFn sgemm = RequireSgemm();
  if (sgemm == nullptr) return 4;
  const float *q = static_cast<const float *>(params[0]);
  const float *kv = packed ? q : static_cast<const float *>(params[1]);
  const float *addend = static_cast<const float *>(params[inputs - 2]);
  const float scale = *static_cast<const float *>(params[inputs - 1]);
  float *out = static_cast<float *>(params[inputs]);
  float *p = static_cast<float *>(params[inputs + 1]);
  const int64_t pairs = a.g * a.heads;
  // query-row blocks per (g, h): enough work items for every thread, blocks of at least 16 rows
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((a.n + 15) / 16, (4 * NumThreads() + pairs - 1) / pairs));
  std::vector<int> status(static_cast<size_t>(pairs * blocks), 0);
  ParallelFor(pairs * blocks, [&](int64_t item) {
    const int64_t pair = item / blocks, blk = item % blocks, g = pair / a.heads, h = pair % a.heads;
    const int64_t r0 = a.n * blk / blocks, r1 = a.n * (blk + 1) / blocks;
    if (r0 >= r1) return;
    const float *qh = q + (g * a.n + r0) * a.q_stride + h * a.d;
    const float *kh = kv + g * a.m * a.kv_stride + a.k_off + h * a.d;
    const float *vh = kv + g * a.m * a.kv_stride + a.v_off + h * a.d;
    float *ph = p + pair * a.n * a.m;
    int st = sgemm('N', 'T', r1 - r0, a.m, a.d, scale, qh, a.q_stride, kh, a.kv_stride, 0.0f, ph + r0 * a.m, a.m);
    SoftmaxRows(ph, a.a_count ? AddendOf(addend, a, g, h) : nullptr, r0, r1, a.m);
    st |= sgemm('N', 'N', r1 - r0, a.d, a.m, 1.0f, ph + r0 * a.m, a.m, vh, a.kv_stride, 0.0f,
                out + (g * a.n + r0) * a.c + h * a.d, a.c);
    status[item] = st;
  });
  return GemmStatus(status);
}

int AttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool packed) {
  // inputs: sources (1 or 2), addend, scale, p, dout; outputs: dsources (1 or 2), daddend
  const int inputs = packed ? 5 : 6, sources = packed ? 1 : 2;
  const Args args{packed ? "qkv addend scale p dout dqkv daddend" : "q kv addend scale p dout dq dkv daddend", nparam,
                  ndims, shapes, dtypes};
  if (!args.Count(inputs + sources + 1) || !args.Rank(inputs - 2, 4)) return 1;
  AttentionGeometry a;
  if (!ReadAttention(args, packed, sources + 2, shapes[inputs - 2][1], &a)) return 3;
  for (int i = sources + 2; i < nparam; ++i)
    if (!args.Float32(i)) return 2;
  SgemmFn sgemm = RequireSgemm();
  if (sgemm == nullptr) return 4;
  const float *q = static_cast<const float *>(params[0]);
  const float *kv = packed ? q : static_cast<const float *>(params[1]);
  const float scale = *static_cast<const float *>(params[sources + 1]);
  const float *p = static_cast<const float *>(params[inputs - 2]);
  const float *dout = static_cast<const float *>(params[inputs - 1]);
  float *dq = static_cast<float *>(params[inputs]);
  float *dkv = packed ? dq : static_cast<float *>(params[inputs + 1]);
  float *dadd = static_cast<float *>(params[inputs + sources]);
  const int64_t pairs = a.g * a.heads, nm = a.n * a.m;
  const int64_t add_size = a.a_count ? a.a_count * a.a_heads * nm : 1;
  const int64_t chunks = ReductionChunks(pairs);
  std::vector<float> partial(a.a_count ? static_cast<size_t>(chunks * add_size) : 0, 0.0f);
  std::vector<int> status(static_cast<size_t>(chunks), 0);
  ParallelChunks(pairs, chunks, [&](int64_t chunk, int64_t begin, int64_t end) {
    std::vector<float> ds(static_cast<size_t>(nm));
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t g = pair / a.heads, h = pair % a.heads;
      const float *qh = q + g * a.n * a.q_stride + h * a.d;
      const float *kh = kv + g * a.m * a.kv_stride + a.k_off + h * a.d;
      const float *vh = kv + g * a.m * a.kv_stride + a.v_off + h * a.d;
      const float *ph = p + pair * nm;
      const float *doh = dout + g * a.n * a.c + h * a.d;
      int st = sgemm('N', 'T', a.n, a.m, a.d, 1.0f, doh, a.c, vh, a.kv_stride, 0.0f, ds.data(), a.m);  // dp
      st |= sgemm('T', 'N', a.m, a.d, a.n, 1.0f, ph, a.m, doh, a.c, 0.0f,
                  dkv + g * a.m * a.kv_stride + a.v_off + h * a.d, a.kv_stride);  // dv
      for (int64_t r = 0; r < a.n; ++r) {
        float *__restrict__ dr = ds.data() + r * a.m;
        const float *__restrict__ pr = ph + r * a.m;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= a.m; j += 8)
          for (int t = 0; t < 8; ++t) acc[t] += dr[j + t] * pr[j + t];
        float dot = 0.0f;
        for (; j < a.m; ++j) dot += dr[j] * pr[j];
        for (int t = 0; t < 8; ++t) dot += acc[t];
        for (j = 0; j < a.m; ++j) dr[j] = pr[j] * (dr[j] - dot);
      }
      if (a.a_count) {
        float *__restrict__ acc = partial.data() + chunk * add_size +
                                  ((g % a.a_count) * a.a_heads + (a.a_heads == 1 ? 0 : h)) * nm;
        const float *__restrict__ src = ds.data();
        for (int64_t i = 0; i < nm; ++i) acc[i] += src[i];
      }
      st |= sgemm('N', 'N', a.n, a.d, a.m, scale, ds.data(), a.m, kh, a.kv_stride, 0.0f,
                  dq + g * a.n * a.q_stride + h * a.d, a.q_stride);  // dq
      st |= sgemm('T', 'N', a.m, a.d, a.n, scale, ds.data(), a.m, qh, a.q_stride, 0.0f,
                  dkv + g * a.m * a.kv_stride + a.k_off + h * a.d, a.kv_stride);  // dk
      status[chunk] |= st;
    }
  });
  if (a.a_count) {
    SumChunksParallel(partial.data(), chunks, add_size, add_size, dadd);
  } else {
    dadd[0] = 0.0f;
  }
  return GemmStatus(status);
}

}  // namespace

CONVATTN_EXPORT_PLAIN(linear, Linear)
CONVATTN_EXPORT_PLAIN(linear_grad, LinearGrad)
CONVATTN_EXPORT_FLAG(attention_packed, Attention, true)
CONVATTN_EXPORT_FLAG(attention_split, Attention, false)
CONVATTN_EXPORT_FLAG(attention_packed_grad, AttentionGrad, true)
CONVATTN_EXPORT_FLAG(attention_split_grad, AttentionGrad, false)
