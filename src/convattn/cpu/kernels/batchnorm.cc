// BatchNorm kernels (evaluation and training statistics, plain / ReLU / residual + ReLU), each with its gradient.
// float32 only; one channel per work item over the library's thread pool (common.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

using namespace convattn;

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

// The tensors' names for the messages: [grad][train][act]
const char *BnNames(bool grad, bool train, BnAct act) {
  static const char *const kNames[2][2][3] = {
      {{"x gamma beta mean var eps y", "x gamma beta mean var eps y", "x gamma beta mean var eps res y"},
       {"x gamma beta moving_mean moving_var hyper y mean var new_moving_mean new_moving_var",
        "x gamma beta moving_mean moving_var hyper y mean var new_moving_mean new_moving_var",
        "x gamma beta moving_mean moving_var hyper res y mean var new_moving_mean new_moving_var"}},
      {{"x gamma mean var eps dy dx dgamma dbeta", "x gamma mean var eps dy y dx dgamma dbeta",
        "x gamma mean var eps dy y dx dgamma dbeta dres"},
       {"x gamma mean var hyper dy dx dgamma dbeta", "x gamma mean var hyper dy y dx dgamma dbeta",
        "x gamma mean var hyper dy y dx dgamma dbeta dres"}}};
  return kNames[grad][train][act];
}

bool BnShape(const int *ndims, int64_t *const *shapes, int64_t *n, int64_t *c, int64_t *hw) {
  if (ndims[0] < 2) return false;
  *n = shapes[0][0];
  *c = shapes[0][1];
  *hw = NumElements(ndims[0], shapes[0]) / std::max<int64_t>(*n * *c, 1);
  return true;
}

// The forward kernels' checks: `outputs` after the inputs (x, gamma, beta, mean, var, eps or hyper [, res]), all
// float32, four per-channel vectors, `hyper_size` values in the fifth, res the shape of x. 0 or an error code.
int BnForwardCheck(const Args &args, BnAct act, int outputs, int64_t hyper_size, int64_t *n, int64_t *c,
                   int64_t *hw) {
  const int *ndims = args.ndims;
  int64_t *const *shapes = args.shapes;
  if (!args.Count(BnInputs(act) + outputs) || !args.MinRank(0, 2)) return 1;
  BnShape(ndims, shapes, n, c, hw);
  if (!args.AllFloat32()) return 2;
  for (int i = 1; i < 5; ++i)
    if (NumElements(ndims[i], shapes[i]) != *c) return args.Mismatch("the per-channel vectors need C values (x's axis 1)");
  if (NumElements(ndims[5], shapes[5]) != hyper_size)
    return args.Mismatch(hyper_size == 1 ? "eps needs one value" : "hyper needs two values (eps, momentum)");
  if (act == kAddRelu && NumElements(ndims[6], shapes[6]) != NumElements(ndims[0], shapes[0]))
    return args.Mismatch("res needs the size of x");
  return 0;
}

int BnInfer(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, BnAct act) {
  const int in = BnInputs(act);
  int64_t n, c, hw;
  const Args args{BnNames(false, false, act), nparam, ndims, shapes, dtypes};
  if (int err = BnForwardCheck(args, act, 1, 1, &n, &c, &hw)) return err;
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
  const Args args{BnNames(true, batch, act), nparam, ndims, shapes, dtypes};
  if (!args.Count(in + out) || !args.MinRank(0, 2)) return 1;
  BnShape(ndims, shapes, &n, &c, &hw);
  if (!args.AllFloat32()) return 2;
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
  const Args args{BnNames(false, true, act), nparam, ndims, shapes, dtypes};
  if (int err = BnForwardCheck(args, act, 5, 2, &n, &c, &hw)) return err;
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

#define CONVATTN_EXPORT_BN(stem, act)                           \
  CONVATTN_EXPORT_FLAG(bn_infer##stem, BnInfer, act)            \
  CONVATTN_EXPORT_FLAG(bn_infer##stem##_grad, BnInferGrad, act) \
  CONVATTN_EXPORT_FLAG(bn_train##stem, BnTrain, act)            \
  CONVATTN_EXPORT_FLAG(bn_train##stem##_grad, BnTrainGrad, act)

CONVATTN_EXPORT_BN(, kPlain)
CONVATTN_EXPORT_BN(_relu, kRelu)
CONVATTN_EXPORT_BN(_add_relu, kAddRelu)
