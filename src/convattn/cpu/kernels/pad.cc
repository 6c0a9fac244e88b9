// Reflection padding of NCHW maps (PyTorch's 'reflect': the border is not repeated) for the local-window kernels,
// which read pre-padded maps. MindSpore's CPU MirrorPad and its gradient run an index computation per element
// (convattn.bench op profile: 7 % of an ACmix-ResNet-26 forward); these copy whole rows.
//
//   REFLECT_PAD      (x[N,C,H,W])              -> xp[N,C,H+2p,W+2p]
//   REFLECT_PAD_SUB  (x[N,C,H,W], s[M,C,H,W])  -> xp = pad(x - s), s broadcast over N (M = 1 or N); ACmix's
//                                                 keys minus the position encoding, padded in the same pass
//   REFLECT_UNPAD    (dxp, x)                  -> dx[N,C,H,W]: each padded element's gradient added to the element
//                                                 it copies (x: its shape only)
//
// p comes from the shapes (Hp - H = Wp - W = 2p, 0 < p < min(H, W)). float32 only; planes over the thread pool.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace {

using namespace convattn;

inline int64_t Reflect(int64_t i, int64_t n) {  // index i in [-p, n + p) -> [0, n)
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

struct PadGeometry {
  int64_t n, c, h, w, p;
};

bool PadShapes(const Args &args, int64_t **shapes, int small, int big, PadGeometry *g) {
  const int64_t *s = shapes[small], *b = shapes[big];
  g->n = s[0];
  g->c = s[1];
  g->h = s[2];
  g->w = s[3];
  const int64_t eh = b[2] - s[2], ew = b[3] - s[3];
  g->p = eh / 2;
  (void)args;
  return b[0] == s[0] && b[1] == s[1] && eh == ew && eh % 2 == 0 && g->p > 0 && g->p < g->h && g->p < g->w;
}

// one padded plane from the source plane x (minus sub, when given)
void PadPlane(const float *x, const float *sub, float *out, const PadGeometry &g) {
  const int64_t wp = g.w + 2 * g.p;
  for (int64_t r = 0; r < g.h + 2 * g.p; ++r) {
    const int64_t sr = Reflect(r - g.p, g.h);
    const float *src = x + sr * g.w;
    float *dst = out + r * wp;
    if (sub != nullptr) {
      const float *sb = sub + sr * g.w;
      float *__restrict__ mid = dst + g.p;
      for (int64_t j = 0; j < g.w; ++j) mid[j] = src[j] - sb[j];
    } else {
      std::memcpy(dst + g.p, src, sizeof(float) * g.w);
    }
    for (int64_t j = 0; j < g.p; ++j) {
      dst[j] = dst[g.p + (g.p - j)];                                  // column -(p - j) reflects to p - j
      dst[g.p + g.w + j] = dst[g.p + (g.w - 2 - j)];                  // column w + j reflects to w - 2 - j
    }
  }
}

int Pad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool with_sub) {
  const int count = with_sub ? 3 : 2;
  const Args args{with_sub ? "x s xp" : "x xp", nparam, ndims, shapes, dtypes};
  if (!args.Count(count)) return 1;
  for (int i = 0; i < count; ++i) {
    if (!args.Rank(i, 4)) return 1;
  }
  if (!args.AllFloat32()) return 2;
  PadGeometry g{};
  if (!PadShapes(args, shapes, 0, count - 1, &g)) {
    return args.Mismatch("xp must be x padded by p on every side, 0 < p < min(H, W)");
  }
  if (with_sub && (shapes[1][1] != g.c || shapes[1][2] != g.h || shapes[1][3] != g.w ||
                   (shapes[1][0] != 1 && shapes[1][0] != g.n))) {
    return args.Mismatch("s must be (1 or N, C, H, W) like x");
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *s = with_sub ? static_cast<const float *>(params[1]) : nullptr;
  float *xp = static_cast<float *>(params[count - 1]);
  const int64_t plane = g.h * g.w, pplane = (g.h + 2 * g.p) * (g.w + 2 * g.p);
  const bool per_sample = with_sub && shapes[1][0] == g.n;
  ParallelFor(g.n * g.c, [&](int64_t nc) {
    const float *sub = s == nullptr ? nullptr : s + (per_sample ? nc : nc % g.c) * plane;
    PadPlane(x + nc * plane, sub, xp + nc * pplane, g);
  });
  return 0;
}

int PadPlain(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  return Pad(nparam, params, ndims, shapes, dtypes, false);
}

int PadSub(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  return Pad(nparam, params, ndims, shapes, dtypes, true);
}

int Unpad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"dxp x dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(3) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4)) return 1;
  if (!args.Float32({0, 2})) return 2;
  PadGeometry g{};
  if (!PadShapes(args, shapes, 2, 0, &g)) {
    return args.Mismatch("dxp must be dx padded by p on every side, 0 < p < min(H, W)");
  }
  const float *dxp = static_cast<const float *>(params[0]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t plane = g.h * g.w, wp = g.w + 2 * g.p, pplane = (g.h + 2 * g.p) * wp;
  ParallelFor(g.n * g.c, [&](int64_t nc) {
    const float *src = dxp + nc * pplane;
    float *dst = dx + nc * plane;
    std::fill(dst, dst + plane, 0.0f);
    for (int64_t r = 0; r < g.h + 2 * g.p; ++r) {
      float *row = dst + Reflect(r - g.p, g.h) * g.w;
      const float *in = src + r * wp;
      const float *__restrict__ mid = in + g.p;
      float *__restrict__ out = row;
      for (int64_t j = 0; j < g.w; ++j) out[j] += mid[j];
      for (int64_t j = 0; j < g.p; ++j) {
        row[g.p - j] += in[j];
        row[g.w - 2 - j] += in[g.p + g.w + j];
      }
    }
  });
  return 0;
}

}  // namespace

CONVATTN_EXPORT_PLAIN(reflect_pad, PadPlain)
CONVATTN_EXPORT_PLAIN(reflect_pad_sub, PadSub)
CONVATTN_EXPORT_PLAIN(reflect_unpad, Unpad)
