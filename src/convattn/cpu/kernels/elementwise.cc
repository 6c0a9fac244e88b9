// Elementwise and row kernels of the transformer families: the exact GELU and the bias of a Dense layer, each
// with its gradient. float32 only; blocks of elements over the library's thread pool (common.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

// Exact (erf) GELU, elementwise over any float32 tensor, and its gradient (MindSpore's CPU Erf kernel is a
// scalar loop an order of magnitude slower than this):
//   GELU     (x)      -> y    y  = x * Phi(x),                  Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))
//   GELU_GRAD(x, dy)  -> dx   dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7; the form PyTorch's vectorised CPU erf uses), written
// through h = 0.5 * erfc(|x| / sqrt(2)) = Phi(-|x|) so that Phi(x) for negative x has no cancellation, and
// branch-free so that the loops vectorise.
constexpr int64_t kEltBlock = 16384;

// Phi(v) and exp(-v^2 / 2)
inline void NormalCdf(float v, float *cdf, float *gauss) {
  const float z = std::fabs(v) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  const float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                      0.254829592f) * t;
  const float e = ExpApprox(-z * z);
  const float h = 0.5f * poly * e;
  *cdf = v >= 0.0f ? 1.0f - h : h;
  *gauss = e;
}

int Gelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x y", nparam, ndims, shapes, dtypes};
  if (!args.Count(2)) return 1;
  if (!args.Float32({0, 1})) return 2;
  const int64_t n = NumElements(ndims[0], shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  ParallelFor((n + kEltBlock - 1) / kEltBlock, [&](int64_t b) {
    const int64_t end = std::min(n, (b + 1) * kEltBlock);
    const float *__restrict__ xs = x;
    float *__restrict__ ys = y;
    for (int64_t i = b * kEltBlock; i < end; ++i) {
      float cdf, gauss;
      NormalCdf(xs[i], &cdf, &gauss);
      ys[i] = xs[i] * cdf;
    }
  });
  return 0;
}

int GeluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x dy dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(3)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  const int64_t n = NumElements(ndims[0], shapes[0]);
  if (NumElements(ndims[1], shapes[1]) != n) return args.Mismatch("x and dy differ in size");
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  ParallelFor((n + kEltBlock - 1) / kEltBlock, [&](int64_t b) {
    const int64_t end = std::min(n, (b + 1) * kEltBlock);
    const float *__restrict__ xs = x;
    const float *__restrict__ gs = dy;
    float *__restrict__ ds = dx;
    for (int64_t i = b * kEltBlock; i < end; ++i) {
      float cdf, gauss;
      NormalCdf(xs[i], &cdf, &gauss);
      ds[i] = gs[i] * (cdf + xs[i] * gauss * 0.39894228040143268f);
    }
  });
  return 0;
}

// The bias of a Dense layer on the last axis, and its gradient (MindSpore's CPU BiasAddGrad is a slow
// column reduction):
//   BIAS_ADD (x[..., N], b[N]) -> y[..., N]   y = x + b
//   BIAS_SUM (dy[..., N], b)   -> db[N]       db = sum of dy over every axis but the last (b: its shape only)
int BiasAdd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x b y", nparam, ndims, shapes, dtypes};
  if (!args.Count(3)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  if (ndims[0] < 1) return args.Mismatch("x has no last axis");
  const int64_t n = shapes[0][ndims[0] - 1];
  if (NumElements(ndims[1], shapes[1]) != n || n <= 0) return args.Mismatch("b's size is not x's last axis");
  const int64_t rows = NumElements(ndims[0], shapes[0]) / n;
  const float *x = static_cast<const float *>(params[0]);
  const float *b = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t per_block = std::max<int64_t>(1, kEltBlock / n);
  ParallelFor((rows + per_block - 1) / per_block, [&](int64_t blk) {
    const int64_t end = std::min(rows, (blk + 1) * per_block);
    for (int64_t r = blk * per_block; r < end; ++r) {
      const float *__restrict__ xr = x + r * n;
      float *__restrict__ yr = y + r * n;
      for (int64_t k = 0; k < n; ++k) yr[k] = xr[k] + b[k];
    }
  });
  return 0;
}

int BiasSum(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"dy b db", nparam, ndims, shapes, dtypes};
  if (!args.Count(3)) return 1;
  if (!args.Float32({0, 2})) return 2;
  if (ndims[0] < 1) return args.Mismatch("dy has no last axis");
  const int64_t n = shapes[0][ndims[0] - 1];
  if (NumElements(ndims[2], shapes[2]) != n || n <= 0) return args.Mismatch("db's size is not dy's last axis");
  const int64_t rows = NumElements(ndims[0], shapes[0]) / n;
  const float *dy = static_cast<const float *>(params[0]);
  float *db = static_cast<float *>(params[2]);
  const int64_t chunks = ReductionChunks(rows);
  std::vector<float> partial(static_cast<size_t>(chunks * n), 0.0f);
  ParallelChunks(rows, chunks, [&](int64_t chunk, int64_t begin, int64_t end) {
    AddRows(dy, begin, end, n, partial.data() + chunk * n);
  });
  SumChunks(partial.data(), chunks, n, n, db);
  return 0;
}

}  // namespace

CONVATTN_EXPORT_PLAIN(gelu, Gelu)
CONVATTN_EXPORT_PLAIN(gelu_grad, GeluGrad)
CONVATTN_EXPORT_PLAIN(bias_add, BiasAdd)
CONVATTN_EXPORT_PLAIN(bias_sum, BiasSum)
