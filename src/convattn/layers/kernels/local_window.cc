// Fused local-window kernels for MindSpore's CPU `ops.Custom(func_type="aot")`.
//
// Three operators over a k x k window (stride 1, dilation d) of a pre-padded map, never building the
// k*k-expanded tensor that an unfold/gather would:
//
//   AGG    (w[N,G,T,H,W], xp[N,C,Hp,Wp])    -> y[N,C,H,W]      y[c,p]  = sum_t w[g(c),t,p] * xp[c,p+o_t]
//   CORR   (a[N,C,H,W],   xp[N,C,Hp,Wp])    -> w[N,G,T,H,W]    w[g,t,p] = sum_{c in g} a[c,p] * xp[c,p+o_t]
//   AGG_T  (w[N,G,T,H,W], g[N,C,H,W])       -> dx[N,C,Hp,Wp]   dx[c,p+o_t] += w[g(c),t,p] * g[c,p]
//
// with T = k*k taps in F.unfold order (o_t = (d*(t/k), d*(t%k))), Hp = H + d*(k-1), Wp = W + d*(k-1).
// The three are each other's gradients: dAGG/dw = CORR(dy, xp), dAGG/dxp = AGG_T(w, dy),
// dCORR/da = AGG(dw, xp), dCORR/dxp = AGG_T(dw, a).
//
// Channel -> weight-group maps g(c) (C divisible by G):
//   *_interleaved: g(c) = c mod G      (SAN: feature channel c uses weight channel c mod n_w)
//   *_contiguous:  g(c) = c / (C / G)  (multi-head attention: head h owns channels [h*C/G, (h+1)*C/G))
//
// float32 only (the Python wrapper casts). Work is split over std::threads (as many as the process's CPU
// affinity allows, capped by CONVATTN_NUM_THREADS); the inner loops run along contiguous image rows.
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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
  int64_t n, c, g, taps, h, w, hp, wp, k, d;
};

// Fills k and d from T (= k*k) and the padded/unpadded sizes; returns false when they are inconsistent.
bool Finish(Geometry *geo) {
  int64_t k = 1;
  while (k * k < geo->taps) ++k;
  if (k * k != geo->taps || geo->g <= 0 || geo->c % geo->g != 0) return false;
  geo->k = k;
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

// y[c,p] = sum_t w[g(c),t,p] * xp[c,p+o_t]
int Agg(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved) {
  if (nparam != 3 || ndims[0] != 5 || ndims[1] != 4 || ndims[2] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[1][2], shapes[1][3], 0, 0};
  if (shapes[0][0] != geo.n || !Finish(&geo)) return 3;
  const float *w = static_cast<const float *>(params[0]);
  const float *xp = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  const int64_t per = geo.c / geo.g;
  // one task per (n, g): each weight row is read once and applied to the group's `per` channels
  ParallelFor(geo.n * geo.g, [&](int64_t ng) {
    const int64_t n = ng / geo.g, g = ng % geo.g;
    const float *wg = w + ng * geo.taps * hw;
    for (int64_t s = 0; s < per; ++s) {
      float *yc = y + (n * geo.c + ChannelOf(g, s, geo, interleaved)) * hw;
      std::fill(yc, yc + hw, 0.0f);
    }
    for (int64_t t = 0; t < geo.taps; ++t) {
      const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
      const float *wt = wg + t * hw;
      for (int64_t s = 0; s < per; ++s) {
        const int64_t nc = n * geo.c + ChannelOf(g, s, geo, interleaved);
        const float *xc = xp + nc * phw;
        float *yc = y + nc * hw;
        for (int64_t i = 0; i < geo.h; ++i) {
          const float *__restrict__ wr = wt + i * geo.w;
          const float *__restrict__ xr = xc + (i + oy) * geo.wp + ox;
          float *__restrict__ yr = yc + i * geo.w;
          for (int64_t j = 0; j < geo.w; ++j) yr[j] += wr[j] * xr[j];
        }
      }
    }
  });
  return 0;
}

// w[g,t,p] = sum_{c in g} a[c,p] * xp[c,p+o_t]
int Corr(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved) {
  if (nparam != 3 || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 5) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[0][0], shapes[0][1], shapes[2][1], shapes[2][2], shapes[0][2], shapes[0][3],
               shapes[1][2], shapes[1][3], 0, 0};
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
        const float *__restrict__ ar = ac + i * geo.w;
        const float *__restrict__ xr = xc + (i + oy) * geo.wp + ox;
        float *__restrict__ wr = wt + i * geo.w;
        for (int64_t j = 0; j < geo.w; ++j) wr[j] += ar[j] * xr[j];
      }
    }
  });
  return 0;
}

// dx[c,p+o_t] += w[g(c),t,p] * g[c,p]
int AggT(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool interleaved) {
  if (nparam != 3 || ndims[0] != 5 || ndims[1] != 4 || ndims[2] != 4) return 1;
  if (!IsFloat32(dtypes[0]) || !IsFloat32(dtypes[1]) || !IsFloat32(dtypes[2])) return 2;
  Geometry geo{shapes[1][0], shapes[1][1], shapes[0][1], shapes[0][2], shapes[0][3], shapes[0][4],
               shapes[2][2], shapes[2][3], 0, 0};
  if (shapes[0][0] != geo.n || shapes[2][0] != geo.n || shapes[2][1] != geo.c || !Finish(&geo)) return 3;
  const float *w = static_cast<const float *>(params[0]);
  const float *gy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t hw = geo.h * geo.w, phw = geo.hp * geo.wp;
  const int64_t per = geo.c / geo.g;
  ParallelFor(geo.n * geo.g, [&](int64_t ng) {
    const int64_t n = ng / geo.g, g = ng % geo.g;
    const float *wg = w + ng * geo.taps * hw;
    for (int64_t s = 0; s < per; ++s) {
      float *dc = dx + (n * geo.c + ChannelOf(g, s, geo, interleaved)) * phw;
      std::fill(dc, dc + phw, 0.0f);
    }
    for (int64_t t = 0; t < geo.taps; ++t) {
      const int64_t oy = geo.d * (t / geo.k), ox = geo.d * (t % geo.k);
      const float *wt = wg + t * hw;
      for (int64_t s = 0; s < per; ++s) {
        const int64_t nc = n * geo.c + ChannelOf(g, s, geo, interleaved);
        const float *gc = gy + nc * hw;
        float *dc = dx + nc * phw;
        for (int64_t i = 0; i < geo.h; ++i) {
          const float *__restrict__ wr = wt + i * geo.w;
          const float *__restrict__ gr = gc + i * geo.w;
          float *__restrict__ dr = dc + (i + oy) * geo.wp + ox;
          for (int64_t j = 0; j < geo.w; ++j) dr[j] += wr[j] * gr[j];
        }
      }
    }
  });
  return 0;
}

}  // namespace

#define CONVATTN_EXPORT(name, impl, mode)                                                                   \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,      \
                      void *stream, void *extra) {                                                         \
    (void)stream;                                                                                          \
    (void)extra;                                                                                           \
    return impl(nparam, params, ndims, shapes, dtypes, mode);                                              \
  }

CONVATTN_EXPORT(agg_interleaved, Agg, true)
CONVATTN_EXPORT(agg_contiguous, Agg, false)
CONVATTN_EXPORT(corr_interleaved, Corr, true)
CONVATTN_EXPORT(corr_contiguous, Corr, false)
CONVATTN_EXPORT(agg_t_interleaved, AggT, true)
CONVATTN_EXPORT(agg_t_contiguous, AggT, false)
