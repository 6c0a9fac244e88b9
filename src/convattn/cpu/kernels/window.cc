// Fused local-window kernels for MindSpore's CPU `ops.Custom(func_type="aot")`.
//
// Three operators over a k x k window (stride 1, dilation d) of a pre-padded map, never building the
// k*k-expanded tensor that an unfold/gather would:
//
//   AGG    (w[N,G,T,H,W], xp[N,C,Hp,Wp])    -> y[N,C,H,W]      y[c,p]  = sum_t w[g(c),t,p] * xp[c,p+o_t]
//   CORR   (a[N,C,H,W],   xp[N,C,Hp,Wp])    -> w[N,G,T,H,W]    w[g,t,p] = sum_{c in g} a[c,p] * xp[c,p+o_t]
//   AGG_T  (w[N,G,T,H,W], g[N,C,H,W], xp)   -> dx[N,C,Hp,Wp]   dx[c,p+o_t] += w[g(c),t,p] * g[c,p]
//
// with T = k*k taps in F.unfold order (o_t = (d*(t/k), d*(t%k))), Hp = H + d*(k-1), Wp = W + d*(k-1).
// The *_s2 variants read the window of output p at 2p + o_t (stride 2, dilation 1; ACmix's down-sampling
// layers); AGG_T's third input is the forward's padded map, for its shape only.
// The three are each other's gradients: dAGG/dw = CORR(dy, xp), dAGG/dxp = AGG_T(w, dy),
// dCORR/da = AGG(dw, xp), dCORR/dxp = AGG_T(dw, a).
//
// Channel -> weight-group maps g(c) (C divisible by G):
//   *_interleaved: g(c) = c mod G      (SAN: feature channel c uses weight channel c mod n_w)
//   *_contiguous:  g(c) = c / (C / G)  (multi-head attention: head h owns channels [h*C/G, (h+1)*C/G))
//
// float32 only (the Python wrapper casts); the inner loops run along contiguous image rows, the work items over
// the library's thread pool (common.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

struct Geometry {
  int64_t n, c, g, taps, h, w, hp, wp, k, d, s;
};

// Fills k and d from T (= k*k), the stride and the padded/unpadded sizes; false when they are inconsistent.
// Stride 1: Hp = H + d(k-1) exactly. Stride s > 1 (dilation 1): the padded map covers s(H-1)+k rows, possibly
// with up to s-1 unread rows at the end (floor in the output-size formula).
bool Finish(Geometry *geo) {
  int64_t k = 1;
  while (k * k < geo->taps) ++k;
  if (k * k != geo->taps || geo->g <= 0 || geo->c % geo->g != 0 || geo->s < 1) return false;
  geo->k = k;
  if (geo->s > 1) {
    geo->d = 1;
    return geo->s * (geo->h - 1) + k <= geo->hp && geo->s * (geo->w - 1) + k <= geo->wp;
  }
  if (k == 1) {
    geo->d = 1;
    return geo->hp == geo->h && geo->wp == geo->w;
  }
  int64_t ext_h = geo->hp - geo->h, ext_w = geo->wp - geo->w;
  if (ext_h <= 0 || ext_h != ext_w || ext_h % (k - 1) != 0) return false;
  geo->d = ext_h / (k - 1);
  return true;
}

// The refusal of a window kernel whose tensors do not describe one window geometry.
const char *WindowMismatch(int64_t stride) {
  return stride > 1 ? "no k x k stride-2 window fits (T = k*k taps, G dividing C, padded map of at least 2(H-1)+k rows)"
                    : "no k x k window fits (T = k*k taps, G dividing C, padded map Hp = H + d(k-1), Wp = W + d(k-1))";
}

inline int64_t ChannelOf(int64_t g, int64_t s, const Geometry &geo, bool interleaved) {
  return interleaved ? g + s * geo.g : g * (geo.c / geo.g) + s;
}

// The row loops: acc[j] += u[j] * v[j * stride] (gather-side) or acc[j * stride] += u[j] * v[j] (scatter-side),
// with a contiguous version the compiler vectorises.
inline void RowFmaGather(float *__restrict__ acc, const float *__restrict__ u, const float *__restrict__ v,
                         int64_t n, int64_t stride) {
  if (stride == 1) {
    for (int64_t j = 0; j < n; ++j) acc[j] += u[j] * v[j];
  } else {
    for (int64_t j = 0; j < n; ++j) acc[j] += u[j] * v[j * stride];
  }
}

inline void RowFmaScatter(float *__restrict__ acc, const float *__restrict__ u, const float *__restrict__ v,
                          int64_t n, int64_t stride) {
  if (stride == 1) {
    for (int64_t j = 0; j < n; ++j) acc[j] += u[j] * v[j];
  } else {
    for (int64_t j = 0; j < n; ++j) acc[j * stride] += u[j] * v[j];
  }
}

// The loop shared by AGG and AGG_T: one task per (n, g) zeroes the group's `per` output planes, then for every
// tap t and channel c of the group calls row_op(n*C + c, weight plane w[n,g,t], o_t). Each weight plane is read
// once for all channels that share it.
template <typename RowOp>
void ForGroupTaps(const Geometry &geo, bool interleaved, const float *w, float *out, int64_t out_plane,
                  RowOp row_op) {
  const int64_t hw = geo.h * geo.w, per = geo.c / geo.g;
  ParallelFor(geo.n * geo.g, [&](int64_t ng) {
    const int64_t n = ng / geo.g, g = ng % geo.g;
    for (int64_t s = 0; s < per; ++s) {
      float *plane = out + (n * geo.c + ChannelOf(g, s, geo, interleaved)) * out_plane;
      std::fill(plane, plane + out_plane, 0.0f);
    }
    for (int64_t t = 0; t < geo.taps; ++t) {
      const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
      for (int64_t s = 0; s < per; ++s) {
        row_op(n * geo.c + ChannelOf(g, s, geo, interleaved), w + (ng * geo.taps + t) * hw, oy, ox);
      }
    }
  });
}

// ---- register-blocked stride-1 forms (k = 3, 5, 7): 8 pixels of a row in one vector register ----
// CORR, stride 1: one task per (n, g, tap row ty) computes the k planes w[n,g,ty*k + tx]; for every 8 pixels of a
// row the k sums stay in registers while the group's channels stream by (one load of a and k of xp per k FMAs,
// where the plain loop loads and stores the sum at every FMA).
template <int K>
void CorrBlocked(const Geometry &geo, bool interleaved, const float *a, const float *xp, float *w) {
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp, per = geo.c / geo.g, d = geo.d;
  ParallelFor(geo.n * geo.g * K, [&](int64_t task) {
    const int64_t ty = task % K, ng = task / K, n = ng / geo.g, g = ng % geo.g;
    float *wrow = w + (ng * geo.taps + ty * K) * hw;
    for (int64_t i = 0; i < geo.h; ++i) {
      const int64_t xoff = (i + d * ty) * geo.wp, aoff = i * geo.w;
      int64_t j = 0;
      for (; j + 8 <= geo.w; j += 8) {
        V8 acc[K];
        for (int tx = 0; tx < K; ++tx) acc[tx] = V8{0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t s = 0; s < per; ++s) {
          const int64_t c = n * geo.c + ChannelOf(g, s, geo, interleaved);
          const V8 av = Load8(a + c * hw + aoff + j);
          const float *xr = xp + c * phw + xoff + j;
          for (int tx = 0; tx < K; ++tx) acc[tx] += av * Load8(xr + d * tx);
        }
        for (int tx = 0; tx < K; ++tx) Store8(wrow + tx * hw + aoff + j, acc[tx]);
      }
      for (; j < geo.w; ++j) {
        float acc[K] = {};
        for (int64_t s = 0; s < per; ++s) {
          const int64_t c = n * geo.c + ChannelOf(g, s, geo, interleaved);
          const float av = a[c * hw + aoff + j];
          const float *xr = xp + c * phw + xoff + j;
          for (int tx = 0; tx < K; ++tx) acc[tx] += av * xr[d * tx];
        }
        for (int tx = 0; tx < K; ++tx) wrow[tx * hw + aoff + j] = acc[tx];
      }
    }
  });
}

// AGG, stride 1: one task per (n, block of 4 channels of one group); for every 8 pixels of a row the 4 sums stay
// in registers over the k*k taps (one load of the shared weight and 4 of xp per 4 FMAs).
template <int K>
void AggBlocked(const Geometry &geo, bool interleaved, const float *w, const float *xp, float *y) {
  constexpr int64_t kCb = 4;
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp, per = geo.c / geo.g, d = geo.d;
  const int64_t blocks = (per + kCb - 1) / kCb;
  ParallelFor(geo.n * geo.g * blocks, [&](int64_t task) {
    const int64_t b = task % blocks, ng = task / blocks, n = ng / geo.g, g = ng % geo.g;
    const int64_t s0 = b * kCb, cnt = std::min(kCb, per - s0);
    const float *wg = w + ng * geo.taps * hw;
    const float *xc[kCb];
    float *yc[kCb];
    for (int64_t u = 0; u < kCb; ++u) {
      const int64_t c = n * geo.c + ChannelOf(g, s0 + std::min(u, cnt - 1), geo, interleaved);
      xc[u] = xp + c * phw;
      yc[u] = y + c * hw;
    }
    for (int64_t i = 0; i < geo.h; ++i) {
      int64_t j = 0;
      for (; j + 8 <= geo.w; j += 8) {
        V8 acc[kCb];
        for (int64_t u = 0; u < kCb; ++u) acc[u] = V8{0, 0, 0, 0, 0, 0, 0, 0};
        for (int ty = 0; ty < K; ++ty) {
          const int64_t xoff = (i + d * ty) * geo.wp + j;
          for (int tx = 0; tx < K; ++tx) {
            const V8 wv = Load8(wg + (ty * K + tx) * hw + i * geo.w + j);
            for (int64_t u = 0; u < kCb; ++u) acc[u] += wv * Load8(xc[u] + xoff + d * tx);
          }
        }
        for (int64_t u = 0; u < cnt; ++u) Store8(yc[u] + i * geo.w + j, acc[u]);
      }
      for (; j < geo.w; ++j) {
        float acc[kCb] = {};
        for (int ty = 0; ty < K; ++ty) {
          const int64_t xoff = (i + d * ty) * geo.wp + j;
          for (int tx = 0; tx < K; ++tx) {
            const float wv = wg[(ty * K + tx) * hw + i * geo.w + j];
            for (int64_t u = 0; u < kCb; ++u) acc[u] += wv * xc[u][xoff + d * tx];
          }
        }
        for (int64_t u = 0; u < cnt; ++u) yc[u][i * geo.w + j] = acc[u];
      }
    }
  });
}

// the blocked form for k = 3, 5, 7 at stride 1 (of CORR or AGG: same arguments); nullptr where it does not apply
using BlockedFn = void (*)(const Geometry &, bool, const float *, const float *, float *);

BlockedFn BlockedFor(int64_t k, int64_t stride, BlockedFn k3, BlockedFn k5, BlockedFn k7) {
  if (stride != 1) return nullptr;
  return k == 3 ? k3 : k == 5 ? k5 : k == 7 ? k7 : nullptr;
}

// y[c,p] = sum_t w[g(c),t,p] * xp[c, s*p+o_t]
int Agg(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved,
        int64_t stride) {
  const Args args{"w xp y", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 5) || !args.Rank(1, 4) || !args.Rank(2, 4)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[1][2], shapes[1][3], 0, 0, stride};
  if (shapes[0][0] != geo.n || !Finish(&geo)) return args.Mismatch(WindowMismatch(stride));
  const float *w = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  if (BlockedFn fast = BlockedFor(geo.k, stride, AggBlocked<3>, AggBlocked<5>, AggBlocked<7>)) {
    fast(geo, interleaved, w, xp, y);
    return 0;
  }
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  ForGroupTaps(geo, interleaved, w, y, hw, [&](int64_t nc, const float *wt, int64_t oy, int64_t ox) {
    const float *xc = xp + nc * phw;
    float *yc = y + nc * hw;
    for (int64_t i = 0; i < geo.h; ++i) {
      RowFmaGather(yc + i * geo.w, wt + i * geo.w, xc + (i * geo.s + oy) * geo.wp + ox, geo.w, geo.s);
    }
  });
  return 0;
}

// w[g,t,p] = sum_{c in g} a[c,p] * xp[c, s*p+o_t]
int Corr(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved,
         int64_t stride) {
  const Args args{"a xp w", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 5)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[2][1], shapes[2][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, stride};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || !Finish(&geo)) return args.Mismatch(WindowMismatch(stride));
  const float *a = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *w = static_cast<float *>(params[2]);
  if (BlockedFn fast = BlockedFor(geo.k, stride, CorrBlocked<3>, CorrBlocked<5>, CorrBlocked<7>)) {
    fast(geo, interleaved, a, xp, w);
    return 0;
  }
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp, per = geo.c / geo.g;
  // one task per (n, g, t): the output slab w[n,g,t] (H*W floats) stays in cache while the group's
  // channels stream through it
  ParallelFor(geo.n * geo.g * geo.taps, [&](int64_t ngt) {
    const int64_t t = ngt % geo.taps, ng = ngt / geo.taps;
    const int64_t n = ng / geo.g, g = ng % geo.g;
    const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
    float *wt = w + ngt * hw;
    std::fill(wt, wt + hw, 0.0f);
    for (int64_t s = 0; s < per; ++s) {
      const int64_t c = ChannelOf(g, s, geo, interleaved);
      const float *ac = a + (n * geo.c + c) * hw;
      const float *xc = xp + (n * geo.c + c) * phw;
      for (int64_t i = 0; i < geo.h; ++i) {
        RowFmaGather(wt + i * geo.w, ac + i * geo.w, xc + (i * geo.s + oy) * geo.wp + ox, geo.w, geo.s);
      }
    }
  });
  return 0;
}

// dx[c, s*p+o_t] += w[g(c),t,p] * g[c,p]; the third input only gives the padded shape (the forward's xp)
int AggT(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved,
         int64_t stride) {
  const Args args{"w dy xp dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 5) || !args.Rank(1, 4) || !args.Rank(3, 4)) return 1;
  if (!args.Float32({0, 1, 3})) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[3][2], shapes[3][3], 0, 0, stride};
  if (shapes[0][0] != geo.n || shapes[3][0] != geo.n || shapes[3][1] != geo.c || !Finish(&geo))
    return args.Mismatch(WindowMismatch(stride));
  const float *w = static_cast<const float *>(params[0]);
  const float *gy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  ForGroupTaps(geo, interleaved, w, dx, phw, [&](int64_t nc, const float *wt, int64_t oy, int64_t ox) {
    const float *gc = gy + nc * hw;
    float *dc = dx + nc * phw;
    for (int64_t i = 0; i < geo.h; ++i) {
      RowFmaScatter(dc + (i * geo.s + oy) * geo.wp + ox, wt + i * geo.w, gc + i * geo.w, geo.w, geo.s);
    }
  });
  return 0;
}

// y[n,g,:,p] = softmax over the taps of x[n,g,:,p]   (x, y: N x G x T x H x W)
int TapSoftmax(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x y", nparam, ndims, shapes, dtypes};
  if (!args.Count(2) || !args.Rank(0, 5) || !args.Rank(1, 5)) return 1;
  if (!args.Float32({0, 1})) return 2;
  const int64_t ng = shapes[0][0] * shapes[0][1], taps = shapes[0][2], hw = shapes[0][3] * shapes[0][4];
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  ParallelFor(ng, [&](int64_t i) {
    const float *xs = x + i * taps * hw;
    float *ys = y + i * taps * hw;
    std::vector<float> mx(xs, xs + hw), sum(hw, 0.0f);
    for (int64_t t = 1; t < taps; ++t) {
      const float *__restrict__ xt = xs + t * hw;
      float *__restrict__ m = mx.data();
      for (int64_t p = 0; p < hw; ++p) m[p] = std::max(m[p], xt[p]);
    }
    for (int64_t t = 0; t < taps; ++t) {
      const float *__restrict__ xt = xs + t * hw;
      float *__restrict__ yt = ys + t * hw;
      const float *__restrict__ m = mx.data();
      float *__restrict__ s = sum.data();
      for (int64_t p = 0; p < hw; ++p) {
        yt[p] = ExpApprox(xt[p] - m[p]);
        s[p] += yt[p];
      }
    }
    for (int64_t p = 0; p < hw; ++p) sum[p] = 1.0f / sum[p];
    for (int64_t t = 0; t < taps; ++t) {
      float *__restrict__ yt = ys + t * hw;
      const float *__restrict__ s = sum.data();
      for (int64_t p = 0; p < hw; ++p) yt[p] *= s[p];
    }
  });
  return 0;
}

// dx = y * (dy - sum_t dy * y)   (the softmax gradient; y, dy, dx: N x G x T x H x W)
int TapSoftmaxGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"y dy dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 5) || !args.Rank(1, 5) || !args.Rank(2, 5)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  const int64_t ng = shapes[0][0] * shapes[0][1], taps = shapes[0][2], hw = shapes[0][3] * shapes[0][4];
  const float *y = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  ParallelFor(ng, [&](int64_t i) {
    const float *ys = y + i * taps * hw, *gs = dy + i * taps * hw;
    float *ds = dx + i * taps * hw;
    std::vector<float> dot(hw, 0.0f);
    for (int64_t t = 0; t < taps; ++t) {
      const float *__restrict__ yt = ys + t * hw, *__restrict__ gt = gs + t * hw;
      float *__restrict__ d = dot.data();
      for (int64_t p = 0; p < hw; ++p) d[p] += yt[p] * gt[p];
    }
    for (int64_t t = 0; t < taps; ++t) {
      const float *__restrict__ yt = ys + t * hw, *__restrict__ gt = gs + t * hw;
      const float *__restrict__ d = dot.data();
      float *__restrict__ dt = ds + t * hw;
      for (int64_t p = 0; p < hw; ++p) dt[p] = yt[p] * (gt[p] - d[p]);
    }
  });
  return 0;
}

// r[c,t,p] = a[c,p] - xp[c,p+o_t]   (a: N x C x H x W, xp padded, r: N x C x T x H x W; SAN's subtraction
// relation and p_i - p_j, one pass instead of gather + broadcast subtract)
int Diff(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"a xp r", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 5)) return 1;
  if (!args.Float32({0, 1, 2})) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[2][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, 1};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || !Finish(&geo)) return args.Mismatch(WindowMismatch(1));
  const float *a = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *r = static_cast<float *>(params[2]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  ParallelFor(geo.n * geo.c * geo.taps, [&](int64_t nct) {
    const int64_t t = nct % geo.taps, nc = nct / geo.taps;
    const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
    const float *ac = a + nc * hw, *xc = xp + nc * phw;
    float *rt = r + nct * hw;
    for (int64_t i = 0; i < geo.h; ++i) {
      const float *__restrict__ ar = ac + i * geo.w;
      const float *__restrict__ xr = xc + (i + oy) * geo.wp + ox;
      float *__restrict__ rr = rt + i * geo.w;
      for (int64_t j = 0; j < geo.w; ++j) rr[j] = ar[j] - xr[j];
    }
  });
  return 0;
}

// dxp[c,p+o_t] += g[c,t,p]   (g: N x C x T x H x W -> N x C x Hp x Wp; the gather's transpose; the second
// input only gives the padded shape)
int Scatter(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"g xp dxp", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 5) || !args.Rank(2, 4)) return 1;
  if (!args.Float32({0, 2})) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[2][2], shapes[2][3], 0, 0, 1};
  if (shapes[2][0] != geo.n || shapes[2][1] != geo.c || !Finish(&geo)) return args.Mismatch(WindowMismatch(1));
  const float *g = static_cast<const float *>(params[0]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  ParallelFor(geo.n * geo.c, [&](int64_t nc) {
    float *dc = dx + nc * phw;
    std::fill(dc, dc + phw, 0.0f);
    for (int64_t t = 0; t < geo.taps; ++t) {
      const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
      const float *gt = g + (nc * geo.taps + t) * hw;
      for (int64_t i = 0; i < geo.h; ++i) {
        const float *__restrict__ gr = gt + i * geo.w;
        float *__restrict__ dr = dc + (i + oy) * geo.wp + ox;
        for (int64_t j = 0; j < geo.w; ++j) dr[j] += gr[j];
      }
    }
  });
  return 0;
}

// SAN pairwise weights at inference, one pass per (n, t) without the k*k-expanded relation tensor:
//   r[c]   = relu(a[c,p] - bp[c,p+o_t])                       (BN0 already folded into a, bp by the caller)
//   h[k]   = relu(b1[k] + sum_c w1[k,c] r[c])                 (BN1 already folded into w1, b1)
//   out[o] = b2[o] + sum_k w2[o,k] h[k]                       -> out[n,o,t,p]  (N x O x T x H x W)
// Inputs: a (N,C,H,W), bp (N,C,Hp,Wp), w1 (K,C), b1 (K), w2 (O,K), b2 (O); the row loops run along W.
int PairwiseMlp(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"a bp w1 b1 w2 b2 out", nparam, ndims, shapes, dtypes};
  if (!args.Count(7) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 2) || !args.Rank(3, 1) ||
      !args.Rank(4, 2) || !args.Rank(5, 1) || !args.Rank(6, 5))
    return 1;
  if (!args.AllFloat32()) return 2;
  const int64_t hidden = shapes[2][0], outs = shapes[4][0];
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[6][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, 1};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || shapes[2][1] != geo.c || shapes[3][0] != hidden ||
      shapes[4][1] != hidden || shapes[5][0] != outs || shapes[6][1] != outs || !Finish(&geo))
    return args.Mismatch("the weights, maps and output do not fit (w1: K x C, b1: K, w2: O x K, b2: O, out: N x O x T x H x W)");
  const float *a = static_cast<const float *>(params[0]);
  const float *bp = static_cast<const float *>(params[1]);
  const float *w1 = static_cast<const float *>(params[2]);
  const float *b1 = static_cast<const float *>(params[3]);
  const float *w2 = static_cast<const float *>(params[4]);
  const float *b2 = static_cast<const float *>(params[5]);
  float *out = static_cast<float *>(params[6]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp, wd = geo.w;
  // one task per (n, t); pixels in blocks of up to kBlock (flattened over H x W so the dense loops stay long
  // on 7x7 maps too); the block's relation and hidden activations stay in cache
  constexpr int64_t kBlock = 256;
  ParallelFor(geo.n * geo.taps, [&](int64_t nt) {
    const int64_t n = nt / geo.taps, t = nt % geo.taps;
    const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
    std::vector<float> rel(geo.c * kBlock), hid(hidden * kBlock);
    std::vector<int64_t> off(kBlock);
    for (int64_t p0 = 0; p0 < hw; p0 += kBlock) {
      const int64_t m = std::min(kBlock, hw - p0);
      for (int64_t q = 0; q < m; ++q) {
        const int64_t i = (p0 + q) / wd, j = (p0 + q) % wd;
        off[q] = (i + oy) * geo.wp + j + ox;
      }
      for (int64_t c = 0; c < geo.c; ++c) {
        const float *ac = a + (n * geo.c + c) * hw + p0;
        const float *bc = bp + (n * geo.c + c) * phw;
        float *rr = rel.data() + c * kBlock;
        for (int64_t q = 0; q < m; ++q) rr[q] = std::max(0.0f, ac[q] - bc[off[q]]);
      }
      for (int64_t k = 0; k < hidden; ++k) {
        float *__restrict__ hr = hid.data() + k * kBlock;
        for (int64_t q = 0; q < m; ++q) hr[q] = b1[k];
        for (int64_t c = 0; c < geo.c; ++c) {
          const float wkc = w1[k * geo.c + c];
          const float *__restrict__ rr = rel.data() + c * kBlock;
          for (int64_t q = 0; q < m; ++q) hr[q] += wkc * rr[q];
        }
        for (int64_t q = 0; q < m; ++q) hr[q] = std::max(0.0f, hr[q]);
      }
      for (int64_t o = 0; o < outs; ++o) {
        float *__restrict__ orow = out + ((n * outs + o) * geo.taps + t) * hw + p0;
        for (int64_t q = 0; q < m; ++q) orow[q] = b2[o];
        for (int64_t k = 0; k < hidden; ++k) {
          const float wok = w2[o * hidden + k];
          const float *__restrict__ hr = hid.data() + k * kBlock;
          for (int64_t q = 0; q < m; ++q) orow[q] += wok * hr[q];
        }
      }
    }
  });
  return 0;
}

}  // namespace

CONVATTN_EXPORT(agg_interleaved, Agg, true, 1)
CONVATTN_EXPORT(agg_contiguous, Agg, false, 1)
CONVATTN_EXPORT(corr_interleaved, Corr, true, 1)
CONVATTN_EXPORT(corr_contiguous, Corr, false, 1)
CONVATTN_EXPORT(agg_t_interleaved, AggT, true, 1)
CONVATTN_EXPORT(agg_t_contiguous, AggT, false, 1)
CONVATTN_EXPORT(agg_interleaved_s2, Agg, true, 2)
CONVATTN_EXPORT(agg_contiguous_s2, Agg, false, 2)
CONVATTN_EXPORT(corr_interleaved_s2, Corr, true, 2)
CONVATTN_EXPORT(corr_contiguous_s2, Corr, false, 2)
CONVATTN_EXPORT(agg_t_interleaved_s2, AggT, true, 2)
CONVATTN_EXPORT(agg_t_contiguous_s2, AggT, false, 2)
CONVATTN_EXPORT_PLAIN(tap_softmax, TapSoftmax)
CONVATTN_EXPORT_PLAIN(tap_softmax_grad, TapSoftmaxGrad)
CONVATTN_EXPORT_PLAIN(diff, Diff)
CONVATTN_EXPORT_PLAIN(scatter, Scatter)
CONVATTN_EXPORT_PLAIN(pairwise_mlp, PairwiseMlp)
