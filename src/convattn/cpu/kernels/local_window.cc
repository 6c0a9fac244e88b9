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
// The same library holds the CPU target's elementwise and row kernels for the transformer families: the exact
// GELU, LayerNorm over the last axis or over the channels of a map, a Dense layer (its bias alone, or the whole
// layer through a private AVX-512 oneDNN sgemm) and VAN's depth-wise convolutions (each with its gradient; see
// their comments below).
//
// float32 only (the Python wrapper casts). Work is split over std::threads (as many as the process's CPU
// affinity allows, capped by CONVATTN_NUM_THREADS); the inner loops run along contiguous image rows.
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

namespace {

int NumThreads() {
  int n = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    n = CPU_COUNT(&set);
  } else {
    n = static_cast<int>(std::thread::hardware_concurrency());
  }
  const char *env = std::getenv("CONVATTN_NUM_THREADS");
  if (env != nullptr) {
    int cap = std::atoi(env);
    if (cap > 0) n = std::min(n, cap);
  }
  return std::max(1, std::min(n, 64));
}

template <typename F>
void ParallelFor(int64_t count, F fn) {
  int nt = static_cast<int>(std::min<int64_t>(NumThreads(), count));
  if (nt <= 1) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  auto worker = [&](int id) {
    for (int64_t i = id; i < count; i += nt) fn(i);
  };
  for (int id = 1; id < nt; ++id) pool.emplace_back(worker, id);
  worker(0);
  for (auto &t : pool) t.join();
}

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

inline int64_t ChannelOf(int64_t g, int64_t s, const Geometry &geo, bool interleaved) {
  return interleaved ? g + s * geo.g : g * (geo.c / geo.g) + s;
}

bool IsFloat32(const char *dtype) { return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0; }

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

// y[c,p] = sum_t w[g(c),t,p] * xp[c, s*p+o_t]
int Agg(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved,
        int64_t stride) {
  if (nparam != 3 || ndims[0] != 5 || ndims[1] != 4 || ndims[2] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[1][2], shapes[1][3], 0, 0, stride};
  if (shapes[0][0] != geo.n || !Finish(&geo)) return 3;
  const float *w = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
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
  if (nparam != 3 || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[2][1], shapes[2][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, stride};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || !Finish(&geo)) return 3;
  const float *a = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *w = static_cast<float *>(params[2]);
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
  if (nparam != 4 || ndims[0] != 5 || ndims[1] != 4 || ndims[3] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[3])) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[3][2], shapes[3][3], 0, 0, stride};
  if (shapes[0][0] != geo.n || shapes[3][0] != geo.n || shapes[3][1] != geo.c || !Finish(&geo)) return 3;
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
  return p * __builtin_bit_cast(float, bits);
}

// y[n,g,:,p] = softmax over the taps of x[n,g,:,p]   (x, y: N x G x T x H x W)
int TapSoftmax(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 2 || ndims[0] != 5 || ndims[1] != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1])) return 2;
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
  if (nparam != 3 || ndims[0] != 5 || ndims[1] != 5 || ndims[2] != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
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
  if (nparam != 3 || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[2][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, 1};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || !Finish(&geo)) return 3;
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
  if (nparam != 3 || ndims[0] != 5 || ndims[2] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[2][2], shapes[2][3], 0, 0, 1};
  if (shapes[2][0] != geo.n || shapes[2][1] != geo.c || !Finish(&geo)) return 3;
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
  if (nparam != 7 || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 2 || ndims[3] != 1 || ndims[4] != 2 ||
      ndims[5] != 1 || ndims[6] != 5)
    return 1;
  for (int i = 0; i < 7; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  const int64_t hidden = shapes[2][0], outs = shapes[4][0];
  Geometry geo{shapes[0][0], shapes[0][1], shapes[0][1], shapes[6][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0, 1};
  if (shapes[1][0] != geo.n || shapes[1][1] != geo.c || shapes[2][1] != geo.c || shapes[3][0] != hidden ||
      shapes[4][1] != hidden || shapes[5][0] != outs || shapes[6][1] != outs || !Finish(&geo))
    return 3;
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

// Exact (erf) GELU, elementwise over any float32 tensor, and its gradient (MindSpore's CPU Erf kernel is a
// scalar loop an order of magnitude slower than this):
//   GELU     (x)      -> y    y  = x * Phi(x),                  Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))
//   GELU_GRAD(x, dy)  -> dx   dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7; the form PyTorch's vectorised CPU erf uses), written
// through h = 0.5 * erfc(|x| / sqrt(2)) = Phi(-|x|) so that Phi(x) for negative x has no cancellation, and
// branch-free so that the loops vectorise.
constexpr int64_t kEltBlock = 16384;

int64_t NumElements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

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
  if (nparam != 2) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1])) return 2;
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
  if (nparam != 3) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  const int64_t n = NumElements(ndims[0], shapes[0]);
  if (NumElements(ndims[1], shapes[1]) != n) return 3;
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
void SumChunks(const float *partial, int64_t chunks, int64_t stride, int64_t width, float *out) {
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t j = 0; j < width; ++j) out[j] += partial[chunk * stride + j];
}

int64_t ReductionChunks(int64_t count) { return std::max<int64_t>(1, std::min<int64_t>(NumThreads(), count)); }

// SumChunks over a wide row, its columns split over the threads (blocks of at least 4096; same sums, same order)
void SumChunksParallel(const float *partial, int64_t chunks, int64_t stride, int64_t width, float *out) {
  ParallelChunks(width, ReductionChunks(width / 4096 + 1), [&](int64_t, int64_t begin, int64_t end) {
    SumChunks(partial + begin, chunks, stride, end - begin, out + begin);
  });
}

// acc[j] += sum of rows [begin, end) of a row-major (rows, n) matrix
void AddRows(const float *m, int64_t begin, int64_t end, int64_t n, float *__restrict__ acc) {
  for (int64_t r = begin; r < end; ++r) {
    const float *__restrict__ row = m + r * n;
    for (int64_t j = 0; j < n; ++j) acc[j] += row[j];
  }
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
  if (nparam != 5) return 1;
  for (int i = 0; i < 5; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  NormShape s;
  if (!ReadNormShape(ndims[0], shapes[0], channels_first, &s) || NumElements(ndims[1], shapes[1]) != s.c ||
      NumElements(ndims[2], shapes[2]) != s.c || NumElements(ndims[3], shapes[3]) != 1)
    return 3;
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
  if (nparam != 7) return 1;
  for (int i = 0; i < 7; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  NormShape s;
  if (!ReadNormShape(ndims[0], shapes[0], channels_first, &s) ||
      NumElements(ndims[1], shapes[1]) != NumElements(ndims[0], shapes[0]) ||
      NumElements(ndims[2], shapes[2]) != s.c || NumElements(ndims[3], shapes[3]) != 1)
    return 3;
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


// The bias of a Dense layer on the last axis, and its gradient (MindSpore's CPU BiasAddGrad is a slow
// column reduction):
//   BIAS_ADD (x[..., N], b[N]) -> y[..., N]   y = x + b
//   BIAS_SUM (dy[..., N], b)   -> db[N]       db = sum of dy over every axis but the last (b: its shape only)
int BiasAdd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  if (ndims[0] < 1) return 3;
  const int64_t n = shapes[0][ndims[0] - 1];
  if (NumElements(ndims[1], shapes[1]) != n || n <= 0) return 3;
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
  if (nparam != 3) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[2])) return 2;
  if (ndims[0] < 1) return 3;
  const int64_t n = shapes[0][ndims[0] - 1];
  if (NumElements(ndims[2], shapes[2]) != n || n <= 0) return 3;
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

// Depth-wise convolution, stride 1, odd k x k kernel with dilation d and "same" zero padding p = d(k-1)/2,
// with bias (VAN's 5x5, 7x7 dilation-3 and 3x3 depth-wise layers; oneDNN's gemm path runs them at under
// 1 GMAC/s on CPU, and their weight gradient was most of a VAN training step):
//   DW_CONV      (x[N,C,H,W], w[C,1,k,k], b[C], d[1] int32)  -> y[N,C,H,W]
//                  y[c,i,j] = b[c] + sum_{u,v} w[c,u,v] * x[c, i + d*u - p, j + d*v - p]
//   DW_CONV_GRAD (x, w, dy, d)                                -> dx, dw, db
//     dx is the same correlation of dy with the flipped kernel; dw[c,u,v] = sum_{n,i,j} dy * shifted x;
//     db[c] = sum dy. Each plane is copied once into a zero-padded buffer so the inner loops run along whole
//     rows; the weight gradient is split over channels (one thread owns a channel for all images), so it is
//     deterministic.
struct DwGeometry {
  int64_t n, c, h, w, k, d, p, hp, wp;
};

bool ReadDwGeometry(int *ndims, int64_t **shapes, const void *dilation, DwGeometry *g) {
  if (ndims[0] != 4 || ndims[1] != 4) return false;
  g->n = shapes[0][0];
  g->c = shapes[0][1];
  g->h = shapes[0][2];
  g->w = shapes[0][3];
  g->k = shapes[1][2];
  g->d = *static_cast<const int32_t *>(dilation);
  if (shapes[1][0] != g->c || shapes[1][1] != 1 || shapes[1][3] != g->k || g->k % 2 != 1 || g->d < 1) return false;
  g->p = g->d * (g->k - 1) / 2;
  g->hp = g->h + 2 * g->p;
  g->wp = g->w + 2 * g->p;
  return true;
}

// src: H x W plane -> dst: Hp x Wp with a zero border of p
void PadPlane(const float *src, const DwGeometry &g, float *dst) {
  std::fill(dst, dst + g.p * g.wp, 0.0f);
  for (int64_t i = 0; i < g.h; ++i) {
    float *row = dst + (i + g.p) * g.wp;
    std::fill(row, row + g.p, 0.0f);
    std::memcpy(row + g.p, src + i * g.w, sizeof(float) * g.w);
    std::fill(row + g.p + g.w, row + g.wp, 0.0f);
  }
  std::fill(dst + (g.h + g.p) * g.wp, dst + g.hp * g.wp, 0.0f);
}

// out[i,j] = bias + sum_{u,v} wt[u,v] * pad[i + d*u, j + d*v]   (flip: wt[k-1-u, k-1-v])
void CorrelatePlane(const float *pad, const float *wt, float bias, bool flip, const DwGeometry &g, float *out) {
  const int64_t taps = g.k * g.k;
  for (int64_t i = 0; i < g.h; ++i) {
    float *__restrict__ o = out + i * g.w;
    for (int64_t j = 0; j < g.w; ++j) o[j] = bias;
    for (int64_t u = 0; u < g.k; ++u) {
      const float *line = pad + (i + g.d * u) * g.wp;
      for (int64_t v = 0; v < g.k; ++v) {
        const float wv = flip ? wt[taps - 1 - (u * g.k + v)] : wt[u * g.k + v];
        const float *__restrict__ src = line + g.d * v;
        for (int64_t j = 0; j < g.w; ++j) o[j] += wv * src[j];
      }
    }
  }
}

int DwConv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2]) || !IsFloat32(dtypes[4]) ||
      std::strcmp(dtypes[3], "int32") != 0)
    return 2;
  DwGeometry g;
  if (!ReadDwGeometry(ndims, shapes, params[3], &g) || NumElements(ndims[2], shapes[2]) != g.c) return 3;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *b = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[4]);
  const int64_t plane = g.h * g.w;
  ParallelFor(g.n * g.c, [&](int64_t nc) {
    const int64_t c = nc % g.c;
    std::vector<float> pad(g.hp * g.wp);
    PadPlane(x + nc * plane, g, pad.data());
    CorrelatePlane(pad.data(), w + c * g.k * g.k, b[c], false, g, y + nc * plane);
  });
  return 0;
}

int DwConvGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 7) return 1;
  for (int i : {0, 1, 2, 4, 5, 6})
    if (!IsFloat32(dtypes[i])) return 2;
  if (std::strcmp(dtypes[3], "int32") != 0) return 2;
  DwGeometry g;
  if (!ReadDwGeometry(ndims, shapes, params[3], &g) ||
      NumElements(ndims[2], shapes[2]) != NumElements(ndims[0], shapes[0]))
    return 3;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[4]);
  float *dw = static_cast<float *>(params[5]);
  float *db = static_cast<float *>(params[6]);
  const int64_t plane = g.h * g.w, taps = g.k * g.k;
  ParallelFor(g.n * g.c, [&](int64_t nc) {  // dx: dy correlated with the flipped kernel
    const int64_t c = nc % g.c;
    std::vector<float> pad(g.hp * g.wp);
    PadPlane(dy + nc * plane, g, pad.data());
    CorrelatePlane(pad.data(), w + c * taps, 0.0f, true, g, dx + nc * plane);
  });
  ParallelFor(g.c, [&](int64_t c) {  // dw, db: one channel over all images
    std::vector<float> pad(g.hp * g.wp);
    std::vector<float> acc(taps, 0.0f);
    float bias_sum = 0.0f;
    for (int64_t n = 0; n < g.n; ++n) {
      const int64_t nc = n * g.c + c;
      PadPlane(x + nc * plane, g, pad.data());
      const float *gy = dy + nc * plane;
      bias_sum += SumOf(gy, plane);
      for (int64_t u = 0; u < g.k; ++u)
        for (int64_t v = 0; v < g.k; ++v) {
          float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          float tail = 0.0f;
          for (int64_t i = 0; i < g.h; ++i) {
            const float *__restrict__ src = pad.data() + (i + g.d * u) * g.wp + g.d * v;
            const float *__restrict__ gr = gy + i * g.w;
            int64_t j = 0;
            for (; j + 8 <= g.w; j += 8)
              for (int q = 0; q < 8; ++q) part[q] += gr[j + q] * src[j + q];
            for (; j < g.w; ++j) tail += gr[j] * src[j];
          }
          for (int q = 0; q < 8; ++q) tail += part[q];
          acc[u * g.k + v] += tail;
        }
    }
    for (int64_t t = 0; t < taps; ++t) dw[c * taps + t] = acc[t];
    db[c] = bias_sum;
  });
  return 0;
}

// A Dense layer as one GEMM with its gradient, through oneDNN's sgemm from a private copy of MindSpore's own
// oneDNN library (MindSpore's oneDNN is capped at AVX2 by the process's ONEDNN_MAX_CPU_ISA, which its
// convolutions need; the copy, loaded separately, is set to AVX-512 by the Python side before first use):
//   LINEAR      (x[M,K], w[N,K], b[N])  -> y[M,N]            y = x w^T + b
//   LINEAR_GRAD (x, w, dy[M,N])         -> dx, dw, db        dx = dy w, dw = dy^T x, db = sum_M dy
// The library's path comes from CONVATTN_GEMM_LIBRARY (set by convattn.layers.gemm, which loaded and
// configured it). The copy runs single-threaded (oneDNN's threadpool build without a pool); the rows of y and dx,
// and the rows of dw, are split over this file's threads, so every output element is computed by one call.
typedef int (*SgemmFn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                       float, float *, int64_t);

SgemmFn Sgemm() {
  static std::once_flag once;
  static SgemmFn fn = nullptr;
  std::call_once(once, [] {
    const char *path = std::getenv("CONVATTN_GEMM_LIBRARY");
    if (path == nullptr) return;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle != nullptr) fn = reinterpret_cast<SgemmFn>(dlsym(handle, "dnnl_sgemm"));
  });
  return fn;
}

int Linear(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[0] != 2 || ndims[1] != 2) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2]) || !IsFloat32(dtypes[3])) return 2;
  const int64_t m = shapes[0][0], k = shapes[0][1], n = shapes[1][0];
  if (shapes[1][1] != k || NumElements(ndims[2], shapes[2]) != n) return 3;
  SgemmFn sgemm = Sgemm();
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
  for (int st : status)
    if (st != 0) return 5;
  return 0;
}

int LinearGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 6 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2) return 1;
  for (int i = 0; i < 6; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  const int64_t m = shapes[0][0], k = shapes[0][1], n = shapes[1][0];
  if (shapes[1][1] != k || shapes[2][0] != m || shapes[2][1] != n) return 3;
  SgemmFn sgemm = Sgemm();
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
  for (int st : status)
    if (st != 0) return 5;
  return 0;
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

bool ReadAttention(bool packed, int nparam, int *ndims, int64_t **shapes, const char **dtypes, int64_t heads,
                   AttentionGeometry *geo) {
  for (int i = 0; i < nparam; ++i)
    if (!IsFloat32(dtypes[i])) return false;
  const int src = packed ? 1 : 2;  // index of the addend
  if (ndims[0] != 3 || ndims[src - 1] != 3 || ndims[src] != 4 || heads < 1) return false;
  AttentionGeometry a{};
  a.g = shapes[0][0];
  a.n = shapes[0][1];
  if (packed) {
    if (shapes[0][2] % 3 != 0) return false;
    a.c = shapes[0][2] / 3;
    a.m = a.n;
    a.q_stride = a.kv_stride = 3 * a.c;
    a.k_off = a.c;
    a.v_off = 2 * a.c;
  } else {
    a.c = shapes[0][2];
    if (shapes[1][0] != a.g || shapes[1][2] != 2 * a.c) return false;
    a.m = shapes[1][1];
    a.q_stride = a.c;
    a.kv_stride = 2 * a.c;
    a.k_off = 0;
    a.v_off = a.c;
  }
  if (a.c % heads != 0) return false;
  a.heads = heads;
  a.d = a.c / heads;
  const int64_t *ad = shapes[src];
  if (NumElements(4, ad) == 1) {
    a.a_count = a.a_heads = 0;
  } else {
    if (ad[0] < 1 || a.g % ad[0] != 0 || (ad[1] != 1 && ad[1] != heads) || ad[2] != a.n || ad[3] != a.m)
      return false;
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
  if (nparam != inputs + 2 || ndims[inputs + 1] != 4) return 1;
  AttentionGeometry a;
  if (!ReadAttention(packed, nparam, ndims, shapes, dtypes, shapes[inputs + 1][1], &a)) return 3;
  SgemmFn sgemm = Sgemm();
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
  for (int st : status)
    if (st != 0) return 5;
  return 0;
}

int AttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool packed) {
  // inputs: sources (1 or 2), addend, scale, p, dout; outputs: dsources (1 or 2), daddend
  const int inputs = packed ? 5 : 6, sources = packed ? 1 : 2;
  if (nparam != inputs + sources + 1 || ndims[inputs - 2] != 4) return 1;
  AttentionGeometry a;
  if (!ReadAttention(packed, sources + 2, ndims, shapes, dtypes, shapes[inputs - 2][1], &a)) return 3;
  for (int i = sources + 2; i < nparam; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  SgemmFn sgemm = Sgemm();
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
  for (int st : status)
    if (st != 0) return 5;
  return 0;
}



// A dense (groups = 1) convolution with its gradient as im2col + the private sgemm (MindSpore's CPU Conv2D runs
// oneDNN's gemm convolution under the process's AVX2 cap):
//   CONV      (x[N,C,H,W], w[O,C,KH,KW], b[O], geom[6])        -> y[N,O,HO,WO]
//   CONV_GRAD (x, w, b, geom, dy)                               -> dx, dw, db
// geom = (stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w); the output size is y's (the Python
// side resolves "same" / "valid" / explicit padding); a one-element b means no bias (db is then 0).
//   y[n,o,p] = b[o] + sum_{c,u,v} w[o,c,u,v] x[n, c, p_y*sh - pt + u*dh, p_x*sw - pl + v*dw]   (zero outside)
// Work: the output pixels of each image in column blocks whose im2col matrix (C*KH*KW x block) stays near
// 1 MB, y[n][:, block] = w (O x CKK) . cols; 1x1 stride-1 unpadded convolutions multiply x in place. The input
// gradient splits each image's channels over the threads (dcols = w^T dy, then col2im); the weight and bias
// gradients keep one partial per chunk of images, added in chunk order.
struct ConvGeometry {
  int64_t n, c, h, w, o, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw;
  int64_t Ckk() const { return c * kh * kw; }
  int64_t Pixels() const { return ho * wo; }
  bool Pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && ho == h && wo == w; }
  int64_t Block() const {  // output pixels per im2col block
    const int64_t rows = Pointwise() ? c : Ckk();
    return std::max<int64_t>(32, std::min<int64_t>(Pixels(), (int64_t{1} << 18) / std::max<int64_t>(rows, 1)));
  }
};

bool ReadConv(int *ndims, int64_t **shapes, const int32_t *geom, const int64_t *yshape, ConvGeometry *g) {
  if (ndims[0] != 4 || ndims[1] != 4 || ndims[3] != 1 || shapes[3][0] != 6) return false;
  ConvGeometry a{};
  a.n = shapes[0][0], a.c = shapes[0][1], a.h = shapes[0][2], a.w = shapes[0][3];
  a.o = shapes[1][0], a.kh = shapes[1][2], a.kw = shapes[1][3];
  if (shapes[1][1] != a.c || yshape[0] != a.n || yshape[1] != a.o) return false;
  if (NumElements(ndims[2], shapes[2]) != a.o) return false;
  a.ho = yshape[2], a.wo = yshape[3];
  a.sh = geom[0], a.sw = geom[1], a.ph = geom[2], a.pw = geom[3], a.dh = geom[4], a.dw = geom[5];
  if (a.ph < 0) a.ph = std::max<int64_t>(0, (a.ho - 1) * a.sh + a.dh * (a.kh - 1) + 1 - a.h) / 2;  // "same"
  if (a.pw < 0) a.pw = std::max<int64_t>(0, (a.wo - 1) * a.sw + a.dw * (a.kw - 1) + 1 - a.w) / 2;
  if (a.sh < 1 || a.sw < 1 || a.dh < 1 || a.dw < 1 || a.ph < 0 || a.pw < 0 || a.ho < 1 || a.wo < 1) return false;
  *g = a;
  return true;
}

// for one tap row (u, v): the input column of output column ox is ox*sw + off; [lo, hi) the ox that land inside
inline void TapRange(int64_t off, int64_t stride, int64_t width, int64_t out_width, int64_t *lo, int64_t *hi) {
  // smallest ox with ox*stride + off >= 0, and smallest ox with ox*stride + off >= width
  *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *hi = width - off <= 0 ? 0 : (width - off + stride - 1) / stride;
  *lo = std::min(*lo, out_width);
  *hi = std::max(*lo, std::min(*hi, out_width));
}

// cols[(c*KH + u)*KW + v][j - j0] = x[c, oy*sh - ph + u*dh, ox*sw - pw + v*dw] for output pixels j in [j0, j1)
void Im2Col(const float *x, const ConvGeometry &g, int64_t j0, int64_t j1, float *cols) {
  const int64_t block = j1 - j0;
  for (int64_t c = 0; c < g.c; ++c) {
    const float *plane = x + c * g.h * g.w;
    for (int64_t u = 0; u < g.kh; ++u) {
      for (int64_t v = 0; v < g.kw; ++v) {
        float *dst = cols + ((c * g.kh + u) * g.kw + v) * block;
        const int64_t off = v * g.dw - g.pw;
        int64_t lo, hi;
        TapRange(off, g.sw, g.w, g.wo, &lo, &hi);
        for (int64_t j = j0; j < j1;) {
          const int64_t oy = j / g.wo, ox0 = j % g.wo, run = std::min(g.wo - ox0, j1 - j);
          float *__restrict__ d = dst + (j - j0);
          const int64_t iy = oy * g.sh - g.ph + u * g.dh;
          if (iy < 0 || iy >= g.h) {
            std::fill(d, d + run, 0.0f);
          } else {
            const float *__restrict__ row = plane + iy * g.w;
            const int64_t t0 = std::min(std::max<int64_t>(lo - ox0, 0), run);
            const int64_t t1 = std::max(t0, std::min<int64_t>(hi - ox0, run));
            std::fill(d, d + t0, 0.0f);
            if (g.sw == 1) {
              std::memcpy(d + t0, row + ox0 + t0 + off, sizeof(float) * (t1 - t0));
            } else {
              for (int64_t t = t0; t < t1; ++t) d[t] = row[(ox0 + t) * g.sw + off];
            }
            std::fill(d + t1, d + run, 0.0f);
          }
          j += run;
        }
      }
    }
  }
}

// dx[c, ...] += dcols rows of channels [c0, c1) (the transpose of Im2Col), for output pixels [j0, j1)
void Col2Im(const float *dcols, const ConvGeometry &g, int64_t c0, int64_t c1, int64_t j0, int64_t j1, float *dx) {
  const int64_t block = j1 - j0;
  for (int64_t c = c0; c < c1; ++c) {
    float *plane = dx + c * g.h * g.w;
    for (int64_t u = 0; u < g.kh; ++u) {
      for (int64_t v = 0; v < g.kw; ++v) {
        const float *src = dcols + (((c - c0) * g.kh + u) * g.kw + v) * block;
        const int64_t off = v * g.dw - g.pw;
        int64_t lo, hi;
        TapRange(off, g.sw, g.w, g.wo, &lo, &hi);
        for (int64_t j = j0; j < j1;) {
          const int64_t oy = j / g.wo, ox0 = j % g.wo, run = std::min(g.wo - ox0, j1 - j);
          const int64_t iy = oy * g.sh - g.ph + u * g.dh;
          if (iy >= 0 && iy < g.h) {
            float *row = plane + iy * g.w;
            const float *s = src + (j - j0);
            const int64_t t0 = std::max<int64_t>(lo - ox0, 0), t1 = std::min<int64_t>(hi - ox0, run);
            if (g.sw == 1) {
              float *__restrict__ r = row + ox0 + off;
              for (int64_t t = t0; t < t1; ++t) r[t] += s[t];
            } else {
              for (int64_t t = t0; t < t1; ++t) row[(ox0 + t) * g.sw + off] += s[t];
            }
          }
          j += run;
        }
      }
    }
  }
}

// the geometry (x, w, geom = params[3], and the shape of y or dy = params[4]) and the GEMM: 0 or an error code
int ConvSetup(int *ndims, int64_t **shapes, void **params, ConvGeometry *g, SgemmFn *sgemm) {
  if (!ReadConv(ndims, shapes, static_cast<const int32_t *>(params[3]), shapes[4], g)) return 3;
  *sgemm = Sgemm();
  return *sgemm == nullptr ? 4 : 0;
}

int Conv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 5 || ndims[4] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2]) || !IsFloat32(dtypes[4])) return 2;
  ConvGeometry g;
  SgemmFn sgemm;
  if (int err = ConvSetup(ndims, shapes, params, &g, &sgemm)) return err;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *b = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[4]);
  const int64_t pixels = g.Pixels(), block = g.Block(), blocks = (pixels + block - 1) / block;
  const int64_t ckk = g.Ckk();
  const bool pointwise = g.Pointwise();
  std::vector<int> status(static_cast<size_t>(g.n * blocks), 0);
  ParallelChunks(g.n * blocks, ReductionChunks(g.n * blocks), [&](int64_t, int64_t begin, int64_t end) {
    std::vector<float> cols(pointwise ? 0 : static_cast<size_t>(ckk * block));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, j0 = (item % blocks) * block, j1 = std::min(pixels, j0 + block);
      const float *xn = x + n * g.c * g.h * g.w;
      float *yn = y + n * g.o * pixels;
      for (int64_t o = 0; o < g.o; ++o) std::fill(yn + o * pixels + j0, yn + o * pixels + j1, b[o]);
      if (pointwise) {
        status[item] = sgemm('N', 'N', g.o, j1 - j0, g.c, 1.0f, w, g.c, xn + j0, pixels, 1.0f, yn + j0, pixels);
      } else {
        Im2Col(xn, g, j0, j1, cols.data());
        status[item] = sgemm('N', 'N', g.o, j1 - j0, ckk, 1.0f, w, ckk, cols.data(), j1 - j0, 1.0f, yn + j0, pixels);
      }
    }
  });
  for (int st : status)
    if (st != 0) return 5;
  return 0;
}

int ConvGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 8 || ndims[4] != 4) return 1;
  for (int i = 0; i < 8; ++i)
    if (i != 3 && !IsFloat32(dtypes[i])) return 2;
  ConvGeometry g;
  SgemmFn sgemm;
  if (int err = ConvSetup(ndims, shapes, params, &g, &sgemm)) return err;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[4]);
  float *dx = static_cast<float *>(params[5]);
  float *dw = static_cast<float *>(params[6]);
  float *db = static_cast<float *>(params[7]);
  const int64_t pixels = g.Pixels(), block = g.Block(), blocks = (pixels + block - 1) / block;
  const int64_t kk = g.kh * g.kw, ckk = g.Ckk(), plane = g.h * g.w;
  const bool pointwise = g.Pointwise();
  // dx: (image, channel block) items
  const int64_t cblocks = std::max<int64_t>(1, std::min<int64_t>(g.c, (2 * NumThreads() + g.n - 1) / g.n));
  std::vector<int> status(static_cast<size_t>(g.n * cblocks + g.n), 0);
  ParallelChunks(g.n * cblocks, ReductionChunks(g.n * cblocks), [&](int64_t, int64_t begin, int64_t end) {
    std::vector<float> dcols;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / cblocks, cb = item % cblocks;
      const int64_t c0 = g.c * cb / cblocks, c1 = g.c * (cb + 1) / cblocks;
      if (c0 >= c1) continue;
      float *dxn = dx + n * g.c * plane;
      const float *dyn = dy + n * g.o * pixels;
      if (pointwise) {
        status[item] = sgemm('T', 'N', c1 - c0, pixels, g.o, 1.0f, w + c0, g.c, dyn, pixels, 0.0f, dxn + c0 * plane,
                             pixels);
        continue;
      }
      std::fill(dxn + c0 * plane, dxn + c1 * plane, 0.0f);
      dcols.resize(static_cast<size_t>((c1 - c0) * kk * block));
      for (int64_t j0 = 0; j0 < pixels; j0 += block) {
        const int64_t j1 = std::min(pixels, j0 + block);
        status[item] |= sgemm('T', 'N', (c1 - c0) * kk, j1 - j0, g.o, 1.0f, w + c0 * kk, ckk, dyn + j0, pixels, 0.0f,
                              dcols.data(), j1 - j0);
        Col2Im(dcols.data(), g, c0, c1, j0, j1, dxn);
      }
    }
  });
  // dw, db: one partial per chunk of images
  const int64_t chunks = ReductionChunks(g.n);
  std::vector<float> partial(static_cast<size_t>(chunks * (g.o * ckk + g.o)), 0.0f);
  ParallelChunks(g.n, chunks, [&](int64_t chunk, int64_t begin, int64_t end) {
    float *pw = partial.data() + chunk * (g.o * ckk + g.o);
    float *pb = pw + g.o * ckk;
    std::vector<float> cols(pointwise ? 0 : static_cast<size_t>(ckk * block));
    for (int64_t n = begin; n < end; ++n) {
      const float *xn = x + n * g.c * plane;
      const float *dyn = dy + n * g.o * pixels;
      for (int64_t j0 = 0; j0 < pixels; j0 += block) {
        const int64_t j1 = std::min(pixels, j0 + block);
        if (pointwise) {
          status[g.n * cblocks + n] |=
              sgemm('N', 'T', g.o, g.c, j1 - j0, 1.0f, dyn + j0, pixels, xn + j0, pixels, 1.0f, pw, g.c);
        } else {
          Im2Col(xn, g, j0, j1, cols.data());
          status[g.n * cblocks + n] |=
              sgemm('N', 'T', g.o, ckk, j1 - j0, 1.0f, dyn + j0, pixels, cols.data(), j1 - j0, 1.0f, pw, ckk);
        }
      }
      for (int64_t o = 0; o < g.o; ++o) pb[o] += SumOf(dyn + o * pixels, pixels);
    }
  });
  const int64_t stride = g.o * ckk + g.o;
  SumChunksParallel(partial.data(), chunks, stride, g.o * ckk, dw);
  SumChunks(partial.data() + g.o * ckk, chunks, stride, g.o, db);
  for (int st : status)
    if (st != 0) return 5;
  return 0;
}


// Max pooling with implicit -inf padding (nn.MaxPool2d(pad_mode="pad"): MindSpore's CPU MaxPool3DWithArgmax took
// 19 % of a ResNet-26 forward) and its gradient:
//   MAX_POOL      (x[N,C,H,W], geom[6]) -> y[N,C,HO,WO], arg[N,C,HO,WO] (int32: the flat index in the plane)
//   MAX_POOL_GRAD (x, arg, dy)          -> dx                 dx[arg] += dy
// geom = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w); the output size is y's. Ties keep the first
// maximum in row-major window order; NaN inputs are skipped (a window of NaN only gives -inf). One plane per
// work item.
int MaxPool(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 1 || shapes[1][0] != 6 || ndims[2] != 4 || ndims[3] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[2])) return 2;
  const int64_t planes = shapes[0][0] * shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t ho = shapes[2][2], wo = shapes[2][3];
  const int32_t *g = static_cast<const int32_t *>(params[1]);
  const int64_t kh = g[0], kw = g[1], sh = g[2], sw = g[3], ph = g[4], pw = g[5];
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0) return 3;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[2]);
  int32_t *arg = static_cast<int32_t *>(params[3]);
  ParallelFor(planes, [&](int64_t pl) {
    const float *xp = x + pl * h * w;
    float *yp = y + pl * ho * wo;
    int32_t *ap = arg + pl * ho * wo;
    for (int64_t oy = 0; oy < ho; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * sh - ph), y1 = std::min<int64_t>(h, oy * sh - ph + kh);
      for (int64_t ox = 0; ox < wo; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * sw - pw), x1 = std::min<int64_t>(w, ox * sw - pw + kw);
        float best = -std::numeric_limits<float>::infinity();
        int64_t at = y0 * w + x0;
        for (int64_t iy = y0; iy < y1; ++iy) {
          const float *row = xp + iy * w;
          for (int64_t ix = x0; ix < x1; ++ix) {
            const float v = row[ix];
            const bool take = v > best;
            best = take ? v : best;
            at = take ? iy * w + ix : at;
          }
        }
        yp[oy * wo + ox] = best;
        ap[oy * wo + ox] = static_cast<int32_t>(at);
      }
    }
  });
  return 0;
}

int MaxPoolGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[2]) || !IsFloat32(dtypes[3])) return 2;
  const int64_t planes = shapes[0][0] * shapes[0][1], hw = shapes[0][2] * shapes[0][3];
  const int64_t out = shapes[1][2] * shapes[1][3];
  if (NumElements(4, shapes[1]) != planes * out || NumElements(4, shapes[2]) != planes * out) return 3;
  const int32_t *arg = static_cast<const int32_t *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  ParallelFor(planes, [&](int64_t pl) {
    float *dp = dx + pl * hw;
    std::fill(dp, dp + hw, 0.0f);
    const int32_t *ap = arg + pl * out;
    const float *gp = dy + pl * out;
    for (int64_t i = 0; i < out; ++i) dp[ap[i]] += gp[i];
  });
  return 0;
}


// BatchNorm, in evaluation (running statistics) and training (batch statistics) mode, each with its gradient, and
// each optionally followed by a ReLU, or by the addition of a residual map and a ReLU (a ResNet block's
// bn -> relu and relu(bn + identity): MindSpore's CPU ReLU and Add took 15 % of a ResNet-26 forward):
//   act: kPlain  y = bn(x)      kRelu  y = max(bn(x), 0)      kAddRelu  y = max(bn(x) + res, 0)
// bn(x) = (x - mean) r gamma + beta, r = 1 / sqrt(var + eps). The gradients take the output y for the ReLU's mask
// (g = dy where y > 0, else 0; MindSpore's ReLUGrad) and give the residual's gradient g for kAddRelu.
//   BN_INFER      (x[N,C,...], gamma[C], beta[C], mean[C], var[C], eps[1] [, res]) -> y
//   BN_INFER_GRAD (x, gamma, mean, var, eps, dy [, y]) -> dx, dgamma, dbeta [, dres]
//                 dx = g r gamma, dgamma = r sum g (x - mean), dbeta = sum g
//   BN_TRAIN      (x, gamma, beta, moving_mean, moving_var, hyper[2] = {eps, momentum} [, res])
//                 -> y, mean[C], var[C], new moving_mean[C], new moving_var[C]
//                 statistics over N and the pixels (M values per channel); the variance biased to normalise,
//                 unbiased (x M / (M - 1)) for the running value, moving = momentum moving + (1 - momentum) batch
//                 value (MindSpore's and PyTorch's BatchNorm)
//   BN_TRAIN_GRAD (x, gamma, mean, var, hyper, dy [, y]) -> dx, dgamma, dbeta [, dres]
//                 dx = gamma r (g - dbeta / M - (x - mean) r^2 sum g (x - mean) / M)
// One channel per work item; each plane's sums in 8 float lanes (batch statistics: the planes' sums in double),
// added in order.
enum BnAct { kPlain = 0, kRelu = 1, kAddRelu = 2 };

inline int BnInputs(BnAct act) { return act == kAddRelu ? 7 : 6; }

// y over one plane: x * scale + shift [+ res], [max(., 0)]
inline void BnPlane(const float *__restrict__ xs, const float *__restrict__ rs, float scale, float shift, BnAct act,
                    int64_t hw, float *__restrict__ ys) {
  if (act == kPlain) {
    for (int64_t j = 0; j < hw; ++j) ys[j] = xs[j] * scale + shift;
  } else if (act == kRelu) {
    for (int64_t j = 0; j < hw; ++j) ys[j] = std::max(xs[j] * scale + shift, 0.0f);
  } else {
    for (int64_t j = 0; j < hw; ++j) ys[j] = std::max(xs[j] * scale + shift + rs[j], 0.0f);
  }
}

inline float Masked(const float *ys, const float *gs, int64_t j) {
  return ys == nullptr ? gs[j] : gs[j] * static_cast<float>(ys[j] > 0.0f);
}

// Over one channel ch of x and dy [N,C,hw]: sum g and sum g (x - m), g = dy masked by y > 0 where y is given; each
// plane's 8-lane partials added in order
void ChannelGradSums(const float *x, const float *dy, const float *y, int64_t n, int64_t c, int64_t hw, int64_t ch,
                     float m, float *sum_dy, float *sum_dyx) {
  float s0 = 0.0f, s1 = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * c + ch) * hw;
    const float *__restrict__ xs = x + off;
    const float *__restrict__ gs = dy + off;
    const float *__restrict__ ys = y == nullptr ? nullptr : y + off;
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    if (ys == nullptr) {
      for (; j + 8 <= hw; j += 8)
        for (int t = 0; t < 8; ++t) {
          a[t] += gs[j + t];
          b[t] += gs[j + t] * (xs[j + t] - m);
        }
    } else {
      for (; j + 8 <= hw; j += 8)
        for (int t = 0; t < 8; ++t) {
          const float g = gs[j + t] * static_cast<float>(ys[j + t] > 0.0f);  // branch-free: vectorised
          a[t] += g;
          b[t] += g * (xs[j + t] - m);
        }
    }
    for (; j < hw; ++j) {
      const float g = Masked(ys, gs, j);
      s0 += g;
      s1 += g * (xs[j] - m);
    }
    for (int t = 0; t < 8; ++t) s0 += a[t], s1 += b[t];
  }
  *sum_dy = s0;
  *sum_dyx = s1;
}

bool BnShape(int *ndims, int64_t **shapes, int64_t *n, int64_t *c, int64_t *hw) {
  if (ndims[0] < 2) return false;
  *n = shapes[0][0];
  *c = shapes[0][1];
  *hw = NumElements(ndims[0], shapes[0]) / std::max<int64_t>(*n * *c, 1);
  return true;
}

// The forward kernels' checks: `outputs` after the inputs (x, gamma, beta, mean, var, eps or hyper [, res]), all
// float32, four per-channel vectors, `hyper_size` values in the fifth, res the shape of x. 0 or an error code.
int BnForwardCheck(int nparam, int *ndims, int64_t **shapes, const char **dtypes, BnAct act, int outputs,
                   int64_t hyper_size, int64_t *n, int64_t *c, int64_t *hw) {
  if (nparam != BnInputs(act) + outputs || !BnShape(ndims, shapes, n, c, hw)) return 1;
  for (int i = 0; i < nparam; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  for (int i = 1; i < 5; ++i)
    if (NumElements(ndims[i], shapes[i]) != *c) return 3;
  if (NumElements(ndims[5], shapes[5]) != hyper_size) return 3;
  if (act == kAddRelu && NumElements(ndims[6], shapes[6]) != NumElements(ndims[0], shapes[0])) return 3;
  return 0;
}

int BnInfer(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act) {
  const int in = BnInputs(act);
  int64_t n, c, hw;
  if (int err = BnForwardCheck(nparam, ndims, shapes, dtypes, act, 1, 1, &n, &c, &hw)) return err;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]), *beta = static_cast<const float *>(params[2]);
  const float *mean = static_cast<const float *>(params[3]), *var = static_cast<const float *>(params[4]);
  const float eps = *static_cast<const float *>(params[5]);
  const float *res = act == kAddRelu ? static_cast<const float *>(params[6]) : nullptr;
  float *y = static_cast<float *>(params[in]);
  ParallelFor(c, [&](int64_t ch) {
    const float scale = gamma[ch] / std::sqrt(var[ch] + eps), shift = beta[ch] - mean[ch] * scale;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (i * c + ch) * hw;
      BnPlane(x + off, res == nullptr ? nullptr : res + off, scale, shift, act, hw, y + off);
    }
  });
  return 0;
}

// The gradients' common part: inputs (x, gamma, mean, var, eps or hyper, dy [, y]), outputs (dx, dgamma, dbeta
// [, dres]); `batch`: the batch-statistics gradient (training), else the running-statistics one.
int BnGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act, bool batch) {
  const int in = act == kPlain ? 6 : 7, out = act == kAddRelu ? 4 : 3;
  int64_t n, c, hw;
  if (nparam != in + out || !BnShape(ndims, shapes, &n, &c, &hw)) return 1;
  for (int i = 0; i < nparam; ++i)
    if (!IsFloat32(dtypes[i])) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *mean = static_cast<const float *>(params[2]), *var = static_cast<const float *>(params[3]);
  const float eps = static_cast<const float *>(params[4])[0];
  const float *dy = static_cast<const float *>(params[5]);
  const float *y = act == kPlain ? nullptr : static_cast<const float *>(params[6]);
  float *dx = static_cast<float *>(params[in]);
  float *dgamma = static_cast<float *>(params[in + 1]), *dbeta = static_cast<float *>(params[in + 2]);
  float *dres = act == kAddRelu ? static_cast<float *>(params[in + 3]) : nullptr;
  const float inv_count = n * hw > 0 ? 1.0f / static_cast<float>(n * hw) : 0.0f;
  ParallelFor(c, [&](int64_t ch) {
    const float r = 1.0f / std::sqrt(var[ch] + eps), m = mean[ch], scale = gamma[ch] * r;
    float sum_dy, sum_dyx;
    ChannelGradSums(x, dy, y, n, c, hw, ch, m, &sum_dy, &sum_dyx);
    const float mean_dy = batch ? sum_dy * inv_count : 0.0f, k = batch ? sum_dyx * inv_count * r * r : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (i * c + ch) * hw;
      const float *__restrict__ xs = x + off;
      const float *__restrict__ gs = dy + off;
      const float *__restrict__ ys = y == nullptr ? nullptr : y + off;
      float *__restrict__ ds = dx + off;
      if (ys == nullptr && !batch) {
        for (int64_t j = 0; j < hw; ++j) ds[j] = gs[j] * scale;
      } else if (ys == nullptr) {
        for (int64_t j = 0; j < hw; ++j) ds[j] = scale * (gs[j] - mean_dy - (xs[j] - m) * k);
      } else if (dres == nullptr) {
        for (int64_t j = 0; j < hw; ++j) {
          const float g = gs[j] * static_cast<float>(ys[j] > 0.0f);
          ds[j] = scale * (g - mean_dy - (xs[j] - m) * k);
        }
      } else {
        float *__restrict__ rs = dres + off;
        for (int64_t j = 0; j < hw; ++j) {
          const float g = gs[j] * static_cast<float>(ys[j] > 0.0f);
          ds[j] = scale * (g - mean_dy - (xs[j] - m) * k);
          rs[j] = g;
        }
      }
    }
    dgamma[ch] = sum_dyx * r;
    dbeta[ch] = sum_dy;
  });
  return 0;
}

int BnInferGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act) {
  return BnGrad(nparam, params, ndims, shapes, dtypes, act, false);
}

int BnTrainGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act) {
  return BnGrad(nparam, params, ndims, shapes, dtypes, act, true);
}

int BnTrain(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act) {
  const int in = BnInputs(act);
  int64_t n, c, hw;
  if (int err = BnForwardCheck(nparam, ndims, shapes, dtypes, act, 5, 2, &n, &c, &hw)) return err;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]), *beta = static_cast<const float *>(params[2]);
  const float *mm = static_cast<const float *>(params[3]), *mv = static_cast<const float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0], momentum = static_cast<const float *>(params[5])[1];
  const float *res = act == kAddRelu ? static_cast<const float *>(params[6]) : nullptr;
  float *y = static_cast<float *>(params[in]);
  float *mean = static_cast<float *>(params[in + 1]), *var = static_cast<float *>(params[in + 2]);
  float *new_mm = static_cast<float *>(params[in + 3]), *new_mv = static_cast<float *>(params[in + 4]);
  const double count = static_cast<double>(n * hw);
  ParallelFor(c, [&](int64_t ch) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += SumOf(x + (i * c + ch) * hw, hw);
    const float m = count > 0 ? static_cast<float>(sum / count) : 0.0f;
    double dev = 0.0;
    for (int64_t i = 0; i < n; ++i) dev += SquaredDeviation(x + (i * c + ch) * hw, m, hw);
    const float v = count > 0 ? static_cast<float>(dev / count) : 0.0f;
    const float unbiased = count > 1 ? static_cast<float>(dev / (count - 1)) : v;
    const float scale = gamma[ch] / std::sqrt(v + eps), shift = beta[ch] - m * scale;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (i * c + ch) * hw;
      BnPlane(x + off, res == nullptr ? nullptr : res + off, scale, shift, act, hw, y + off);
    }
    mean[ch] = m;
    var[ch] = v;
    new_mm[ch] = momentum * mm[ch] + (1.0f - momentum) * m;
    new_mv[ch] = momentum * mv[ch] + (1.0f - momentum) * unbiased;
  });
  return 0;
}

}  // namespace

#define CONVATTN_EXPORT(name, impl, mode, stride)                                                           \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,      \
                      void *stream, void *extra) {                                                         \
    (void)stream;                                                                                          \
    (void)extra;                                                                                           \
    return impl(nparam, params, ndims, shapes, dtypes, mode, stride);                                      \
  }

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

#define CONVATTN_EXPORT_PLAIN(name, impl)                                                                   \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,      \
                      void *stream, void *extra) {                                                         \
    (void)stream;                                                                                          \
    (void)extra;                                                                                           \
    return impl(nparam, params, ndims, shapes, dtypes);                                                    \
  }

// the kernels with one implementation for two layouts (a bool after the common arguments)
#define CONVATTN_EXPORT_FLAG(name, impl, flag)                                                              \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,      \
                      void *stream, void *extra) {                                                         \
    (void)stream;                                                                                          \
    (void)extra;                                                                                           \
    return impl(nparam, params, ndims, shapes, dtypes, flag);                                              \
  }

CONVATTN_EXPORT_PLAIN(tap_softmax, TapSoftmax)
CONVATTN_EXPORT_PLAIN(tap_softmax_grad, TapSoftmaxGrad)
CONVATTN_EXPORT_PLAIN(diff, Diff)
CONVATTN_EXPORT_PLAIN(scatter, Scatter)
CONVATTN_EXPORT_PLAIN(pairwise_mlp, PairwiseMlp)
CONVATTN_EXPORT_PLAIN(gelu, Gelu)
CONVATTN_EXPORT_PLAIN(gelu_grad, GeluGrad)
CONVATTN_EXPORT_FLAG(layer_norm, LayerNormFwd, false)
CONVATTN_EXPORT_FLAG(layer_norm_grad, LayerNormBwd, false)
CONVATTN_EXPORT_FLAG(layer_norm_cf, LayerNormFwd, true)
CONVATTN_EXPORT_FLAG(layer_norm_cf_grad, LayerNormBwd, true)
CONVATTN_EXPORT_PLAIN(bias_add, BiasAdd)
CONVATTN_EXPORT_PLAIN(bias_sum, BiasSum)
CONVATTN_EXPORT_PLAIN(dw_conv, DwConv)
CONVATTN_EXPORT_PLAIN(dw_conv_grad, DwConvGrad)
CONVATTN_EXPORT_PLAIN(linear, Linear)
CONVATTN_EXPORT_PLAIN(linear_grad, LinearGrad)
CONVATTN_EXPORT_FLAG(attention_packed, Attention, true)
CONVATTN_EXPORT_FLAG(attention_split, Attention, false)
CONVATTN_EXPORT_FLAG(attention_packed_grad, AttentionGrad, true)
CONVATTN_EXPORT_FLAG(attention_split_grad, AttentionGrad, false)
CONVATTN_EXPORT_PLAIN(conv, Conv)
CONVATTN_EXPORT_PLAIN(conv_grad, ConvGrad)
CONVATTN_EXPORT_PLAIN(max_pool, MaxPool)
CONVATTN_EXPORT_PLAIN(max_pool_grad, MaxPoolGrad)
#define CONVATTN_EXPORT_BN(stem, act)                     \
  CONVATTN_EXPORT_FLAG(bn_infer##stem, BnInfer, act)           \
  CONVATTN_EXPORT_FLAG(bn_infer##stem##_grad, BnInferGrad, act) \
  CONVATTN_EXPORT_FLAG(bn_train##stem, BnTrain, act)           \
  CONVATTN_EXPORT_FLAG(bn_train##stem##_grad, BnTrainGrad, act)

CONVATTN_EXPORT_BN(, kPlain)
CONVATTN_EXPORT_BN(_relu, kRelu)
CONVATTN_EXPORT_BN(_add_relu, kAddRelu)
