// Convolution-family kernels: VAN's depth-wise convolutions, the dense convolution as im2col + the runtime's
// GEMM, and max pooling, each with its gradient. float32 only (geometry vectors int32).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

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

constexpr const char *kDwMismatch =
    "expected x (N, C, H, W), w (C, 1, k, k) with k odd, dilation d >= 1, b of C values, dy the size of x";

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
  const Args args{"x w b d y", nparam, ndims, shapes, dtypes};
  if (!args.Count(5)) return 1;
  if (!args.Float32({0, 1, 2, 4}) || !args.Int32(3)) return 2;
  DwGeometry g;
  if (!ReadDwGeometry(ndims, shapes, params[3], &g) || NumElements(ndims[2], shapes[2]) != g.c)
    return args.Mismatch(kDwMismatch);
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
  const Args args{"x w dy d dx dw db", nparam, ndims, shapes, dtypes};
  if (!args.Count(7)) return 1;
  if (!args.Float32({0, 1, 2, 4, 5, 6}) || !args.Int32(3)) return 2;
  DwGeometry g;
  if (!ReadDwGeometry(ndims, shapes, params[3], &g) ||
      NumElements(ndims[2], shapes[2]) != NumElements(ndims[0], shapes[0]))
    return args.Mismatch(kDwMismatch);
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

bool ReadConv(const int *ndims, int64_t *const *shapes, const int32_t *geom, const int64_t *yshape, ConvGeometry *g) {
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
int ConvSetup(const Args &args, void **params, ConvGeometry *g, SgemmFn *sgemm) {
  if (!ReadConv(args.ndims, args.shapes, static_cast<const int32_t *>(params[3]), args.shapes[4], g))
    return args.Mismatch(
        "expected x (N, C, H, W), w (O, C, KH, KW), b of O values, geom of 6 int32 (strides >= 1, "
        "dilations >= 1), y (N, O, HO, WO)");
  *sgemm = RequireSgemm();
  return *sgemm == nullptr ? 4 : 0;
}

int Conv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x w b geom y", nparam, ndims, shapes, dtypes};
  if (!args.Count(5) || !args.Rank(4, 4)) return 1;
  if (!args.Float32({0, 1, 2, 4})) return 2;
  ConvGeometry g;
  SgemmFn sgemm;
  if (int err = ConvSetup(args, params, &g, &sgemm)) return err;
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
  return GemmStatus(status);
}

int ConvGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x w b geom dy dx dw db", nparam, ndims, shapes, dtypes};
  if (!args.Count(8) || !args.Rank(4, 4)) return 1;
  if (!args.Float32({0, 1, 2, 4, 5, 6, 7})) return 2;
  ConvGeometry g;
  SgemmFn sgemm;
  if (int err = ConvSetup(args, params, &g, &sgemm)) return err;
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
  return GemmStatus(status);
}

// Max pooling with implicit -inf padding (nn.MaxPool2d(pad_mode="pad"): MindSpore's CPU MaxPool3DWithArgmax took
// 19 % of a ResNet-26 forward) and its gradient:
//   MAX_POOL      (x[N,C,H,W], geom[6]) -> y[N,C,HO,WO], arg[N,C,HO,WO] (int32: the flat index in the plane)
//   MAX_POOL_GRAD (x, arg, dy)          -> dx                 dx[arg] += dy
// geom = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w); the output size is y's. Ties keep the first
// maximum in row-major window order; NaN inputs are skipped (a window of NaN only gives -inf). One plane per
// work item.
int MaxPool(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const Args args{"x geom y arg", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 4) || !args.Rank(1, 1) || !args.Rank(2, 4) || !args.Rank(3, 4)) return 1;
  if (shapes[1][0] != 6) return Fail(1, "geom has %lld values, expected 6", static_cast<long long>(shapes[1][0]));
  if (!args.Float32({0, 2})) return 2;
  const int64_t planes = shapes[0][0] * shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t ho = shapes[2][2], wo = shapes[2][3];
  const int32_t *g = static_cast<const int32_t *>(params[1]);
  const int64_t kh = g[0], kw = g[1], sh = g[2], sw = g[3], ph = g[4], pw = g[5];
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0)
    return Fail(3, "geom (kernel %lld x %lld, stride %lld x %lld, pad %lld x %lld) needs kernel and stride >= 1, pad >= 0",
                static_cast<long long>(kh), static_cast<long long>(kw), static_cast<long long>(sh),
                static_cast<long long>(sw), static_cast<long long>(ph), static_cast<long long>(pw));
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
  const Args args{"x arg dy dx", nparam, ndims, shapes, dtypes};
  if (!args.Count(4) || !args.Rank(0, 4) || !args.Rank(1, 4) || !args.Rank(2, 4)) return 1;
  if (!args.Float32({0, 2, 3})) return 2;
  const int64_t planes = shapes[0][0] * shapes[0][1], hw = shapes[0][2] * shapes[0][3];
  const int64_t out = shapes[1][2] * shapes[1][3];
  if (NumElements(4, shapes[1]) != planes * out || NumElements(4, shapes[2]) != planes * out)
    return args.Mismatch("arg and dy need x's N x C planes of one output size");
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

}  // namespace

CONVATTN_EXPORT_PLAIN(dw_conv, DwConv)
CONVATTN_EXPORT_PLAIN(dw_conv_grad, DwConvGrad)
CONVATTN_EXPORT_PLAIN(conv, Conv)
CONVATTN_EXPORT_PLAIN(conv_grad, ConvGrad)
CONVATTN_EXPORT_PLAIN(max_pool, MaxPool)
CONVATTN_EXPORT_PLAIN(max_pool_grad, MaxPoolGrad)
