// The data movement around ACmix's two paths, fused (convattn.bench op profile of an ACmix-ResNet-26 forward:
// Concat + Transpose + the fc convolution and the strided slices of the stride-2 layers, 11 % of the time):
//
//   MIX      (q, k, v [B,O,H,W], w[K,3G,1,1], b[K]) -> f[B,D*K,H,W]
//              f[b, d*K + i, p] = b[i] + sum_j w[i, j] * src_j[b, (j mod G)*D + d, p],  src_j = (q, k, v)[j / G]
//            the conv path's input: the head axis (G heads of D = O/G channels) of q, k and v mixed by fc into K
//            maps and reordered to channel d*K + i, as concat + fc + transpose compute it
//   MIX_GRAD (q, k, v, w, b, df) -> (dq, dk, dv, dw, db)
//   SUB2     (x[N,C,H,W]) -> y[N,C,ceil(H/2),ceil(W/2)]   y[.., i, j] = x[.., 2i, 2j]
//   SUB2_T   (dy, x) -> dx   (dx zero but at the even rows and columns; x: its shape only)
//
// float32 only; blocks of pixels over the thread pool (common.h).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

constexpr int64_t kPixelBlock = 2048;
constexpr int64_t kMaxMaps = 16;  // K (fc's outputs, k_conv^2) and G (heads) the blocked loops hold in registers

struct MixGeometry {
  int64_t b, o, hw, k, maps, g, d;  // maps = 3G inputs of fc
};

bool MixShapes(int64_t **shapes, int *ndims, MixGeometry *m) {
  const int64_t *q = shapes[0], *w = shapes[3];
  for (int i = 1; i < 3; ++i) {
    for (int a = 0; a < 4; ++a) {
      if (shapes[i][a] != q[a]) return false;
    }
  }
  if (ndims[3] != 4 || w[2] != 1 || w[3] != 1 || w[1] % 3 != 0 || NumElements(ndims[4], shapes[4]) != w[0]) {
    return false;
  }
  m->b = q[0];
  m->o = q[1];
  m->hw = q[2] * q[3];
  m->k = w[0];
  m->maps = w[1];
  m->g = w[1] / 3;
  if (m->g <= 0 || m->o % m->g != 0) return false;
  m->d = m->o / m->g;
  return true;
}

// out[p] += a * g[p] for p < n, returning sum_p g[p] * in[p] (eight partial sums, so that the loop vectorises
// without reassociation flags)
inline float AxpyDot(float *__restrict__ out, float a, const float *__restrict__ g, const float *__restrict__ in,
                     int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t p = 0;
  for (; p + 8 <= n; p += 8) {
    for (int l = 0; l < 8; ++l) {
      out[p + l] += a * g[p + l];
      acc[l] += g[p + l] * in[p + l];
    }
  }
  float dot = 0.0f;
  for (; p < n; ++p) {
    out[p] += a * g[p];
    dot += g[p] * in[p];
  }
  for (int l = 0; l < 8; ++l) dot += acc[l];
  return dot;
}

// the plane of source map j (of q, k, v) for sample b and head-channel d
inline const float *SourcePlane(const float *const src[3], const MixGeometry &m, int64_t b, int64_t j, int64_t d) {
  return src[j / m.g] + (b * m.o + (j % m.g) * m.d + d) * m.hw;
}

int Mix(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"q k v w b f", nparam, ndims, shapes, dtypes};
  if (!args.Count(6) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4) || !args.Rank(5, 4)) return 1;
  if (!args.AllFloat32()) return 2;
  MixGeometry m{};
  if (!MixShapes(shapes, ndims, &m) || shapes[5][0] != m.b || shapes[5][1] != m.d * m.k ||
      shapes[5][2] * shapes[5][3] != m.hw) {
    return args.Mismatch("q, k, v (B, G*D, H, W) alike, w (K, 3G, 1, 1), b (K), f (B, D*K, H, W)");
  }
  const float *src[3] = {static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                         static_cast<const float *>(params[2])};
  const float *w = static_cast<const float *>(params[3]);
  const float *bias = static_cast<const float *>(params[4]);
  float *f = static_cast<float *>(params[5]);
  const bool blocked = m.k <= kMaxMaps && m.maps <= 3 * kMaxMaps;  // else the plain loop below does every pixel
  const int64_t blocks = (m.hw + kPixelBlock - 1) / kPixelBlock;
  ParallelFor(m.b * m.d * blocks, [&](int64_t task) {
    const int64_t bd = task / blocks, p0 = (task % blocks) * kPixelBlock, len = std::min(kPixelBlock, m.hw - p0);
    const int64_t b = bd / m.d, d = bd % m.d;
    const float *in[3 * kMaxMaps];
    float *out[kMaxMaps];
    int64_t p = 0;
    // 8 pixels at a time: the K outputs in registers, each input vector loaded once for its K products
    if (blocked) {
      for (int64_t j = 0; j < m.maps; ++j) in[j] = SourcePlane(src, m, b, j, d) + p0;
      for (int64_t i = 0; i < m.k; ++i) out[i] = f + ((b * m.d + d) * m.k + i) * m.hw + p0;
    }
    for (; blocked && p + 8 <= len; p += 8) {
      V8 acc[kMaxMaps];
      for (int64_t i = 0; i < m.k; ++i) acc[i] = V8{0, 0, 0, 0, 0, 0, 0, 0} + bias[i];
      for (int64_t j = 0; j < m.maps; ++j) {
        const V8 x = Load8(in[j] + p);
        for (int64_t i = 0; i < m.k; ++i) acc[i] += w[i * m.maps + j] * x;
      }
      for (int64_t i = 0; i < m.k; ++i) Store8(out[i] + p, acc[i]);
    }
    for (; p < len; ++p) {
      for (int64_t i = 0; i < m.k; ++i) {
        float acc = bias[i];
        for (int64_t j = 0; j < m.maps; ++j) acc += w[i * m.maps + j] * SourcePlane(src, m, b, j, d)[p0 + p];
        f[((b * m.d + d) * m.k + i) * m.hw + p0 + p] = acc;
      }
    }
  });
  return 0;
}

int MixGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"q k v w b df dq dk dv dw db", nparam, ndims, shapes, dtypes};
  if (!args.Count(11)) return 1;
  if (!args.AllFloat32()) return 2;
  MixGeometry m{};
  if (!MixShapes(shapes, ndims, &m) || shapes[5][0] != m.b || shapes[5][1] != m.d * m.k) {
    return args.Mismatch("q, k, v (B, G*D, H, W) alike, w (K, 3G, 1, 1), b (K), df (B, D*K, H, W)");
  }
  const float *src[3] = {static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                         static_cast<const float *>(params[2])};
  const float *w = static_cast<const float *>(params[3]);
  const float *df = static_cast<const float *>(params[5]);
  float *dsrc[3] = {static_cast<float *>(params[6]), static_cast<float *>(params[7]),
                    static_cast<float *>(params[8])};
  float *dw = static_cast<float *>(params[9]);
  float *db = static_cast<float *>(params[10]);
  const int64_t blocks = (m.hw + kPixelBlock - 1) / kPixelBlock, tasks = m.b * m.d * blocks;
  const int64_t nw = m.k * m.maps;
  // per task: the input gradients of its pixels (every (b, d, pixel) is one task's alone) and partial dw, db
  std::vector<float> partial(static_cast<size_t>(tasks * (nw + m.k)), 0.0f);
  ParallelFor(tasks, [&](int64_t task) {
    const int64_t bd = task / blocks, p0 = (task % blocks) * kPixelBlock, len = std::min(kPixelBlock, m.hw - p0);
    const int64_t b = bd / m.d, d = bd % m.d;
    float *pw = partial.data() + task * (nw + m.k), *pb = pw + nw;
    for (int64_t j = 0; j < m.maps; ++j) {
      float *__restrict__ out = dsrc[j / m.g] + (b * m.o + (j % m.g) * m.d + d) * m.hw + p0;
      const float *__restrict__ in = SourcePlane(src, m, b, j, d) + p0;
      std::fill(out, out + len, 0.0f);
      for (int64_t i = 0; i < m.k; ++i) {
        const float *__restrict__ g = df + ((b * m.d + d) * m.k + i) * m.hw + p0;
        pw[i * m.maps + j] += AxpyDot(out, w[i * m.maps + j], g, in, len);
      }
    }
    for (int64_t i = 0; i < m.k; ++i) {
      const float *__restrict__ g = df + ((b * m.d + d) * m.k + i) * m.hw + p0;
      float s = 0.0f;
      for (int64_t p = 0; p < len; ++p) s += g[p];
      pb[i] += s;
    }
  });
  std::fill(dw, dw + nw, 0.0f);
  std::fill(db, db + m.k, 0.0f);
  for (int64_t t = 0; t < tasks; ++t) {
    const float *pw = partial.data() + t * (nw + m.k);
    for (int64_t e = 0; e < nw; ++e) dw[e] += pw[e];
    for (int64_t i = 0; i < m.k; ++i) db[i] += pw[nw + i];
  }
  return 0;
}

int Sub2(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x y", nparam, ndims, shapes, dtypes};
  if (!args.Count(2) || !args.Rank(0, 4) || !args.Rank(1, 4)) return 1;
  if (!args.AllFloat32()) return 2;
  const int64_t *x = shapes[0], *y = shapes[1];
  if (x[0] != y[0] || x[1] != y[1] || y[2] != (x[2] + 1) / 2 || y[3] != (x[3] + 1) / 2) {
    return args.Mismatch("y must be x at the even rows and columns: (N, C, ceil(H/2), ceil(W/2))");
  }
  const float *in = static_cast<const float *>(params[0]);
  float *out = static_cast<float *>(params[1]);
  const int64_t w = x[3], ho = y[2], wo = y[3];
  ParallelFor(x[0] * x[1], [&](int64_t nc) {
    const float *src = in + nc * x[2] * w;
    float *dst = out + nc * ho * wo;
    for (int64_t i = 0; i < ho; ++i) {
      const float *row = src + 2 * i * w;
      for (int64_t j = 0; j < wo; ++j) dst[i * wo + j] = row[2 * j];
    }
  });
  return 0;
}

int Sub2T(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"dy x dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4)) return 1;
  if (!args.Float32({0, 2})) return 2;
  const int64_t *y = shapes[0], *x = shapes[2];
  if (x[0] != y[0] || x[1] != y[1] || y[2] != (x[2] + 1) / 2 || y[3] != (x[3] + 1) / 2) {
    return args.Mismatch("dy must be dx at the even rows and columns: (N, C, ceil(H/2), ceil(W/2))");
  }
  const float *in = static_cast<const float *>(params[0]);
  float *out = static_cast<float *>(params[2]);
  const int64_t h = x[2], w = x[3], ho = y[2], wo = y[3];
  ParallelFor(x[0] * x[1], [&](int64_t nc) {
    const float *src = in + nc * ho * wo;
    float *dst = out + nc * h * w;
    std::fill(dst, dst + h * w, 0.0f);
    for (int64_t i = 0; i < ho; ++i) {
      float *row = dst + 2 * i * w;
      for (int64_t j = 0; j < wo; ++j) row[2 * j] = src[i * wo + j];
    }
  });
  return 0;
}

}  // namespace

CONVATTN_EXPORT_PLAIN(acmix_mix, Mix)
CONVATTN_EXPORT_PLAIN(acmix_mix_grad, MixGrad)
CONVATTN_EXPORT_PLAIN(subsample2, Sub2)
CONVATTN_EXPORT_PLAIN(subsample2_t, Sub2T)

// ---- ACmix's dep_conv: a k x k stride-1 convolution, zero padding k/2, G groups of CI inputs and CO outputs
// (ACmix: CI = k_conv^2 = 9 shifted maps, CO = heads), which oneDNN's grouped path runs at a few GMAC/s ----
//
//   GCONV      (x[B,G*CI,H,W], w[G*CO,CI,k,k])            -> y[B,G*CO,H,W]
//   GCONV_DX   (dy[B,G*CO,H,W], w, x)                     -> dx[B,G*CI,H,W]   (x: its shape only)
//   GCONV_DW   (x, dy, w)                                 -> dw[G*CO,CI,k,k]  (w: its shape only)
//
// One task per (b, g): the group's CI input planes are copied once into a zero-padded scratch block, then for
// every 8 output pixels the CO sums stay in registers over CI * k * k taps. DX is the same loop on dy with the
// weight transposed per group and flipped; DW sums dy * shifted x per task, then over the batch.
namespace {

constexpr int64_t kMaxCo = 16;

struct GConvShape {
  int64_t b, g, ci, co, h, w, k;
};

// the rows of one (b, g) task with CO outputs and a K x K kernel known at compile time: the CO sums of 8 pixels
// stay in registers; the tail pixels of a row take the scalar loop
template <int CO, int K>
void GConvRows(const GConvShape &s, const float *scratch, const float *wg, float *yg) {
  const int64_t pad = K / 2, hp = s.h + 2 * pad, wp = s.w + 2 * pad, hw = s.h * s.w;
  constexpr int KK = K * K;
  for (int64_t i = 0; i < s.h; ++i) {
    int64_t j = 0;
    for (; j + 8 <= s.w; j += 8) {
      V8 acc[CO];
      for (int o = 0; o < CO; ++o) acc[o] = V8{0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t c = 0; c < s.ci; ++c) {
        const float *xc = scratch + c * hp * wp + i * wp + j;
        const float *wc = wg + c * KK;
        for (int t = 0; t < KK; ++t) {
          const V8 xv = Load8(xc + (t / K) * wp + t % K);
          for (int o = 0; o < CO; ++o) acc[o] += wc[o * s.ci * KK + t] * xv;
        }
      }
      for (int o = 0; o < CO; ++o) Store8(yg + o * hw + i * s.w + j, acc[o]);
    }
    for (; j < s.w; ++j) {
      for (int o = 0; o < CO; ++o) {
        float acc = 0.0f;
        for (int64_t c = 0; c < s.ci; ++c) {
          const float *xc = scratch + c * hp * wp + i * wp + j;
          for (int t = 0; t < KK; ++t) acc += wg[(o * s.ci + c) * KK + t] * xc[(t / K) * wp + t % K];
        }
        yg[o * hw + i * s.w + j] = acc;
      }
    }
  }
}

// out[b, g*co + o] = sum_{c, ty, tx} wt[(g*co + o), c, ty, tx] * in_padded[b, g*ci + c, i + ty, j + tx]
void GConvForward(const GConvShape &s, const float *in, const float *wt, float *out) {
  const int64_t pad = s.k / 2, hp = s.h + 2 * pad, wp = s.w + 2 * pad, hw = s.h * s.w;
  const int64_t kk = s.k * s.k;
  ParallelFor(s.b * s.g, [&](int64_t task) {
    const int64_t b = task / s.g, g = task % s.g;
    thread_local std::vector<float> scratch;  // one block per task, its memory kept by the pool's thread
    scratch.assign(static_cast<size_t>(s.ci * hp * wp + 8), 0.0f);
    for (int64_t c = 0; c < s.ci; ++c) {
      const float *src = in + ((b * s.g + g) * s.ci + c) * hw;
      float *dst = scratch.data() + c * hp * wp;
      for (int64_t i = 0; i < s.h; ++i) std::memcpy(dst + (i + pad) * wp + pad, src + i * s.w, sizeof(float) * s.w);
    }
    const float *wg = wt + g * s.co * s.ci * kk;
    float *yg = out + (b * s.g + g) * s.co * hw;
    if (s.k == 3 && s.co == 4) {
      GConvRows<4, 3>(s, scratch.data(), wg, yg);
      return;
    }
    if (s.k == 3 && s.co == 9) {
      GConvRows<9, 3>(s, scratch.data(), wg, yg);
      return;
    }
    for (int64_t i = 0; i < s.h; ++i) {
      int64_t j = 0;
      for (; s.co <= kMaxCo && j + 8 <= s.w; j += 8) {
        V8 acc[kMaxCo];
        for (int64_t o = 0; o < s.co; ++o) acc[o] = V8{0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t c = 0; c < s.ci; ++c) {
          const float *xc = scratch.data() + c * hp * wp + i * wp + j;
          for (int64_t ty = 0; ty < s.k; ++ty) {
            for (int64_t tx = 0; tx < s.k; ++tx) {
              const V8 xv = Load8(xc + ty * wp + tx);
              const float *wo = wg + c * kk + ty * s.k + tx;
              for (int64_t o = 0; o < s.co; ++o) acc[o] += wo[o * s.ci * kk] * xv;
            }
          }
        }
        for (int64_t o = 0; o < s.co; ++o) Store8(yg + o * hw + i * s.w + j, acc[o]);
      }
      for (; j < s.w; ++j) {
        for (int64_t o = 0; o < s.co; ++o) {
          float acc = 0.0f;
          for (int64_t c = 0; c < s.ci; ++c) {
            const float *xc = scratch.data() + c * hp * wp + i * wp + j;
            for (int64_t t = 0; t < kk; ++t) acc += wg[(o * s.ci + c) * kk + t] * xc[(t / s.k) * wp + t % s.k];
          }
          yg[o * hw + i * s.w + j] = acc;
        }
      }
    }
  });
}

bool GConvShapes(const int64_t *x, const int64_t *w, const int64_t *y, GConvShape *s) {
  if (w[2] != w[3] || w[2] % 2 == 0 || w[1] <= 0) return false;
  s->ci = w[1];
  s->k = w[2];
  if (x[1] % s->ci != 0) return false;
  s->g = x[1] / s->ci;
  if (w[0] % s->g != 0) return false;
  s->co = w[0] / s->g;
  s->b = x[0];
  s->h = x[2];
  s->w = x[3];
  return y[0] == x[0] && y[1] == w[0] && y[2] == x[2] && y[3] == x[3];
}

int GConv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x w y", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4)) return 1;
  if (!args.AllFloat32()) return 2;
  GConvShape s{};
  if (!GConvShapes(shapes[0], shapes[1], shapes[2], &s)) {
    return args.Mismatch("x (B, G*CI, H, W), w (G*CO, CI, k, k) with odd k, y (B, G*CO, H, W)");
  }
  GConvForward(s, static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
               static_cast<float *>(params[2]));
  return 0;
}

int GConvDx(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"dy w x dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(3, 4)) return 1;
  if (!args.Float32({0, 1, 3})) return 2;
  GConvShape s{};
  if (!GConvShapes(shapes[3], shapes[1], shapes[0], &s)) {
    return args.Mismatch("dy (B, G*CO, H, W), w (G*CO, CI, k, k) with odd k, dx (B, G*CI, H, W)");
  }
  const float *w = static_cast<const float *>(params[1]);
  const int64_t kk = s.k * s.k;
  // per group: w'[c, o, ty, tx] = w[o, c, k-1-ty, k-1-tx] (inputs and outputs swap, the taps flip)
  std::vector<float> wt(static_cast<size_t>(s.g * s.ci * s.co * kk));
  for (int64_t g = 0; g < s.g; ++g)
    for (int64_t o = 0; o < s.co; ++o)
      for (int64_t c = 0; c < s.ci; ++c)
        for (int64_t t = 0; t < kk; ++t)
          wt[((g * s.ci + c) * s.co + o) * kk + (kk - 1 - t)] = w[((g * s.co + o) * s.ci + c) * kk + t];
  GConvShape back{s.b, s.g, s.co, s.ci, s.h, s.w, s.k};
  GConvForward(back, static_cast<const float *>(params[0]), wt.data(), static_cast<float *>(params[3]));
  return 0;
}

// r[t] += sum over pixels of dy[p] * x_padded[p + o_t] for the K*K taps, the sums of 8 pixels in registers
template <int K>
void DwTaps(const GConvShape &s, const float *xs, const float *dyo, float *r) {
  constexpr int KK = K * K;
  const int64_t wp = s.w + 2 * (K / 2);
  V8 acc[KK];
  for (int t = 0; t < KK; ++t) acc[t] = V8{0, 0, 0, 0, 0, 0, 0, 0};
  float tail[KK] = {};
  for (int64_t i = 0; i < s.h; ++i) {
    int64_t j = 0;
    for (; j + 8 <= s.w; j += 8) {
      const V8 gv = Load8(dyo + i * s.w + j);
      for (int t = 0; t < KK; ++t) acc[t] += gv * Load8(xs + (i + t / K) * wp + j + t % K);
    }
    for (; j < s.w; ++j) {
      const float gv = dyo[i * s.w + j];
      for (int t = 0; t < KK; ++t) tail[t] += gv * xs[(i + t / K) * wp + j + t % K];
    }
  }
  for (int t = 0; t < KK; ++t) {
    float sum = tail[t];
    for (int l = 0; l < 8; ++l) sum += acc[t][l];
    r[t] += sum;
  }
}

int GConvDw(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x dy w dw", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4) || !args.Rank(3, 4)) return 1;
  if (!args.Float32({0, 1, 3})) return 2;
  GConvShape s{};
  if (!GConvShapes(shapes[0], shapes[2], shapes[1], &s)) {
    return args.Mismatch("x (B, G*CI, H, W), dy (B, G*CO, H, W), dw (G*CO, CI, k, k) with odd k");
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[3]);
  const int64_t pad = s.k / 2, hp = s.h + 2 * pad, wp = s.w + 2 * pad, hw = s.h * s.w, kk = s.k * s.k;
  const int64_t per_group = s.co * s.ci * kk;
  std::vector<float> partial(static_cast<size_t>(s.b * s.g * per_group), 0.0f);
  ParallelFor(s.b * s.g, [&](int64_t task) {
    const int64_t b = task / s.g, g = task % s.g;
    thread_local std::vector<float> scratch;  // as in GConvForward
    scratch.assign(static_cast<size_t>(s.ci * hp * wp + 8), 0.0f);
    for (int64_t c = 0; c < s.ci; ++c) {
      const float *src = x + ((b * s.g + g) * s.ci + c) * hw;
      float *dst = scratch.data() + c * hp * wp;
      for (int64_t i = 0; i < s.h; ++i) std::memcpy(dst + (i + pad) * wp + pad, src + i * s.w, sizeof(float) * s.w);
    }
    float *res = partial.data() + task * per_group;
    const float *dyg = dy + (b * s.g + g) * s.co * hw;
    for (int64_t o = 0; o < s.co; ++o) {
      for (int64_t c = 0; c < s.ci; ++c) {
        const float *xs = scratch.data() + c * hp * wp;
        float *r = res + (o * s.ci + c) * kk;
        if (s.k == 3) {
          DwTaps<3>(s, xs, dyg + o * hw, r);
        } else {
          for (int64_t i = 0; i < s.h; ++i)
            for (int64_t j = 0; j < s.w; ++j) {
              const float gv = dyg[o * hw + i * s.w + j];
              for (int64_t t = 0; t < kk; ++t) r[t] += gv * xs[(i + t / s.k) * wp + j + t % s.k];
            }
        }
      }
    }
  });
  std::fill(dw, dw + s.g * per_group, 0.0f);
  for (int64_t task = 0; task < s.b * s.g; ++task) {
    const int64_t g = task % s.g;
    const float *p = partial.data() + task * per_group;
    float *d = dw + g * per_group;
    for (int64_t e = 0; e < per_group; ++e) d[e] += p[e];
  }
  return 0;
}

}  // namespace

CONVATTN_EXPORT_PLAIN(group_conv, GConv)
CONVATTN_EXPORT_PLAIN(group_conv_dx, GConvDx)
CONVATTN_EXPORT_PLAIN(group_conv_dw, GConvDw)
