// LayerNorm kernels (last axis, or the channels of a map) with their gradients. float32 only; rows or pixel
// blocks over the library's thread pool (common.h); the parameter gradients are chunked reductions.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

// LayerNorm over one axis of extent C of a float32 tensor seen as (outer, C, inner), with gamma, beta (C) and
// eps (a one-element tensor):
//   LAYER_NORM      (x, gamma, beta, eps) -> y                 y = (x - mean) * rstd * gamma + beta
//   LAYER_NORM_GRAD (x, dy, gamma, eps)   -> dx, dgamma, dbeta
//     dx = rstd * (dy*gamma - mean_C(dy*gamma) - xhat * mean_C(dy*gamma*xhat)),  xhat = (x - mean) * rstd
// (biased variance, as torch.nn.LayerNorm and MindSpore's LayerNorm; the gradient recomputes mean and rstd,
// one pass over x, instead of keeping them). `layer_norm` / `layer_norm_grad` normalise the last axis
// (inner = 1, the loops run along the row); `*_cf` normalise axis 1 of an N x C x H x W map in place of
// transpose + LayerNorm + transpose (inner = H*W, the loops run along the pixels of a block).
constexpr int64_t kPixelBlock = 256;

struct NormShape {
  int64_t outer, c, inner;
};

bool ReadNormShape(int ndim, const int64_t *shape, bool channels_first, NormShape *s) {
  if (ndim < 1 || (channels_first && ndim < 2)) return false;
  if (channels_first) {
    s->outer = shape[0];
    s->c = shape[1];
    s->inner = 1;
    for (int i = 2; i < ndim; ++i) s->inner *= shape[i];
  } else {
    s->c = shape[ndim - 1];
    s->outer = 1;
    s->inner = 1;
    for (int i = 0; i < ndim - 1; ++i) s->outer *= shape[i];
  }
  return s->c > 0;
}

const char *NormMismatch(bool channels_first) {
  return channels_first ? "expected x with C on axis 1 (at least 2 dims), dy the size of x, gamma and beta of C values, one eps"
                        : "expected x with C on its last axis, dy the size of x, gamma and beta of C values, one eps";
}

// mean and 1/sqrt(var + eps) of one row of c values
inline void RowStats(const float *xr, int64_t c, float eps, float *mean, float *rstd) {
  const float inv_c = 1.0f / static_cast<float>(c);
  *mean = SumOf(xr, c) * inv_c;
  *rstd = 1.0f / std::sqrt(SquaredDeviation(xr, *mean, c) * inv_c + eps);
}

// the same for each of m pixels of a channels-first block: value k of pixel q at xn[k * inner + q]
void PixelStats(const float *xn, int64_t c, int64_t inner, int64_t m, float eps, float *mean, float *rstd) {
  const float inv_c = 1.0f / static_cast<float>(c);
  for (int64_t q = 0; q < m; ++q) mean[q] = rstd[q] = 0.0f;
  for (int64_t k = 0; k < c; ++k) {
    const float *__restrict__ xk = xn + k * inner;
    for (int64_t q = 0; q < m; ++q) mean[q] += xk[q];
  }
  for (int64_t q = 0; q < m; ++q) mean[q] *= inv_c;
  for (int64_t k = 0; k < c; ++k) {
    const float *__restrict__ xk = xn + k * inner;
    for (int64_t q = 0; q < m; ++q) rstd[q] += (xk[q] - mean[q]) * (xk[q] - mean[q]);
  }
  for (int64_t q = 0; q < m; ++q) rstd[q] = 1.0f / std::sqrt(rstd[q] * inv_c + eps);
}

int LayerNormFwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                 bool channels_first) {
  const Args args{"x gamma beta eps y", nparam, ndims, shapes, dtypes};
  if (!args.Count(5)) return 1;
  if (!args.AllFloat32()) return 2;
  NormShape s;
  if (!ReadNormShape(ndims[0], shapes[0], channels_first, &s) || NumElements(ndims[1], shapes[1]) != s.c ||
      NumElements(ndims[2], shapes[2]) != s.c || NumElements(ndims[3], shapes[3]) != 1)
    return args.Mismatch(NormMismatch(channels_first));
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  const int64_t c = s.c;
  if (s.inner == 1) {
    constexpr int64_t kRows = 64;
    ParallelFor((s.outer + kRows - 1) / kRows, [&](int64_t b) {
      const int64_t end = std::min(s.outer, (b + 1) * kRows);
      for (int64_t r = b * kRows; r < end; ++r) {
        const float *__restrict__ xr = x + r * c;
        float *__restrict__ yr = y + r * c;
        float mean, rstd;
        RowStats(xr, c, eps, &mean, &rstd);
        for (int64_t k = 0; k < c; ++k) yr[k] = (xr[k] - mean) * rstd * gamma[k] + beta[k];
      }
    });
    return 0;
  }
  const int64_t blocks = (s.inner + kPixelBlock - 1) / kPixelBlock;
  ParallelFor(s.outer * blocks, [&](int64_t item) {
    const int64_t n = item / blocks, p0 = (item % blocks) * kPixelBlock;
    const int64_t m = std::min(kPixelBlock, s.inner - p0);
    float mean[kPixelBlock], rstd[kPixelBlock];
    const float *xn = x + n * c * s.inner + p0;
    float *yn = y + n * c * s.inner + p0;
    PixelStats(xn, c, s.inner, m, eps, mean, rstd);
    for (int64_t k = 0; k < c; ++k) {
      const float *__restrict__ xk = xn + k * s.inner;
      float *__restrict__ yk = yn + k * s.inner;
      const float g = gamma[k], bt = beta[k];
      for (int64_t q = 0; q < m; ++q) yk[q] = (xk[q] - mean[q]) * rstd[q] * g + bt;
    }
  });
  return 0;
}

int LayerNormBwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                 bool channels_first) {
  const Args args{"x dy gamma eps dx dgamma dbeta", nparam, ndims, shapes, dtypes};
  if (!args.Count(7)) return 1;
  if (!args.AllFloat32()) return 2;
  NormShape s;
  if (!ReadNormShape(ndims[0], shapes[0], channels_first, &s) ||
      NumElements(ndims[1], shapes[1]) != NumElements(ndims[0], shapes[0]) ||
      NumElements(ndims[2], shapes[2]) != s.c || NumElements(ndims[3], shapes[3]) != 1)
    return args.Mismatch(NormMismatch(channels_first));
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  const float *gamma = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  float *dgamma = static_cast<float *>(params[5]);
  float *dbeta = static_cast<float *>(params[6]);
  const int64_t c = s.c;
  const float inv_c = 1.0f / static_cast<float>(c);
  const bool rows = s.inner == 1;
  const int64_t blocks = rows ? 1 : (s.inner + kPixelBlock - 1) / kPixelBlock;
  const int64_t items = rows ? s.outer : s.outer * blocks;
  const int64_t chunks = ReductionChunks(items);
  std::vector<float> partial(static_cast<size_t>(chunks * 2 * c), 0.0f);
  ParallelChunks(items, chunks, [&](int64_t chunk, int64_t begin, int64_t end) {
    float *__restrict__ pg = partial.data() + chunk * 2 * c;
    float *__restrict__ pb = pg + c;
    if (rows) {
      for (int64_t r = begin; r < end; ++r) {
        const float *__restrict__ xr = x + r * c;
        const float *__restrict__ gr = dy + r * c;
        float *__restrict__ dr = dx + r * c;
        float mean, rstd;
        RowStats(xr, c, eps, &mean, &rstd);
        float a1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 8 <= c; k += 8)
          for (int j = 0; j < 8; ++j) {
            const float xh = (xr[k + j] - mean) * rstd, g = gr[k + j];
            a1[j] += g * gamma[k + j];
            a2[j] += g * gamma[k + j] * xh;
            pg[k + j] += g * xh;
            pb[k + j] += g;
          }
        float s1 = 0.0f, s2 = 0.0f;
        for (; k < c; ++k) {
          const float xh = (xr[k] - mean) * rstd, g = gr[k];
          s1 += g * gamma[k];
          s2 += g * gamma[k] * xh;
          pg[k] += g * xh;
          pb[k] += g;
        }
        for (int j = 0; j < 8; ++j) {
          s1 += a1[j];
          s2 += a2[j];
        }
        s1 *= inv_c;
        s2 *= inv_c;
        for (k = 0; k < c; ++k) dr[k] = rstd * (gr[k] * gamma[k] - s1 - (xr[k] - mean) * rstd * s2);
      }
      return;
    }
    float mean[kPixelBlock], rstd[kPixelBlock], s1[kPixelBlock], s2[kPixelBlock];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, p0 = (item % blocks) * kPixelBlock;
      const int64_t m = std::min(kPixelBlock, s.inner - p0);
      const int64_t base = n * c * s.inner + p0;
      PixelStats(x + base, c, s.inner, m, eps, mean, rstd);
      for (int64_t q = 0; q < m; ++q) s1[q] = s2[q] = 0.0f;
      for (int64_t k = 0; k < c; ++k) {
        const float *__restrict__ xk = x + base + k * s.inner;
        const float *__restrict__ gk = dy + base + k * s.inner;
        const float gm = gamma[k];
        float sg = 0.0f, sb = 0.0f;
        for (int64_t q = 0; q < m; ++q) {
          const float xh = (xk[q] - mean[q]) * rstd[q];
          s1[q] += gk[q] * gm;
          s2[q] += gk[q] * gm * xh;
          sg += gk[q] * xh;
          sb += gk[q];
        }
        pg[k] += sg;
        pb[k] += sb;
      }
      for (int64_t q = 0; q < m; ++q) {
        s1[q] *= inv_c;
        s2[q] *= inv_c;
      }
      for (int64_t k = 0; k < c; ++k) {
        const float *__restrict__ xk = x + base + k * s.inner;
        const float *__restrict__ gk = dy + base + k * s.inner;
        float *__restrict__ dk = dx + base + k * s.inner;
        const float gm = gamma[k];
        for (int64_t q = 0; q < m; ++q)
          dk[q] = rstd[q] * (gk[q] * gm - s1[q] - (xk[q] - mean[q]) * rstd[q] * s2[q]);
      }
    }
  });
  SumChunks(partial.data(), chunks, 2 * c, c, dgamma);
  SumChunks(partial.data() + c, chunks, 2 * c, c, dbeta);
  return 0;
}

}  // namespace

CONVATTN_EXPORT_FLAG(layer_norm, LayerNormFwd, false)
CONVATTN_EXPORT_FLAG(layer_norm_grad, LayerNormBwd, false)
CONVATTN_EXPORT_FLAG(layer_norm_cf, LayerNormFwd, true)
CONVATTN_EXPORT_FLAG(layer_norm_cf_grad, LayerNormBwd, true)
