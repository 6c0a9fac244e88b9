"""LayerNorm (last axis, and the channels of an NCHW map) and BatchNorm (+ ReLU / residual add + ReLU) as fused
CPU kernels with their gradients.

MindSpore 2.10's CPU ``LayerNorm`` and ``LayerNormGrad`` kernels are slow (``convattn.bench`` op profile:
``LayerNormGrad`` alone took 9-23 % of a Swin, DeiT or PVT training step), and so are its BatchNorm kernels in
a ResNet. Each cell here is the MindSpore cell it replaces (same type, parameters and values) computed by
``layer_norm`` / ``layer_norm_grad`` (one pass for the statistics, one for the output; the gradient recomputes
the statistics and reduces ``dgamma``/``dbeta`` per thread in a fixed order) or the ``bn_*`` kernels.
"""
import mindspore as ms
from mindspore import nn, ops

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedLayerNorm", "FusedChannelLayerNorm", "FusedBatchNorm2d", "BN_ACTS"]


def _layer_norm_op(channels_first: bool):
    """``op(x, gamma, beta, eps) -> y`` (a Custom primitive with its bprop) for the last axis, or for axis 1."""
    require_library()
    name = "layer_norm_cf" if channels_first else "layer_norm"
    grad = custom_primitive(f"{name}_grad", "", lambda x, dy, g, e: (x, g, g),
                            out_dtype=lambda x, dy, g, e: (x, g, g))

    def bprop(x, gamma, beta, eps, out, dout):
        dx, dgamma, dbeta = grad(x, dout, gamma, eps)
        return dx, dgamma, dbeta, ops.zeros_like(eps)

    return custom_primitive(name, "", lambda x, g, b, e: x, bprop, out_dtype=lambda x, g, b, e: x)


class FusedLayerNorm(Float32Cell, nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis run by the fused CPU kernels, float32 inside."""

    channels_first = False
    fused = True

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        nn.LayerNorm.__init__(self, (dim,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.op = _layer_norm_op(self.channels_first)
        self.eps_value = ms.Tensor([eps], ms.float32)

    def extend_repr(self):
        return f"{super().extend_repr()}, fused=True"

    def construct(self, x):
        f32 = ms.float32
        return self.op(x.astype(f32), self.gamma.astype(f32), self.beta.astype(f32), self.eps_value).astype(x.dtype)


class FusedChannelLayerNorm(FusedLayerNorm):
    """LayerNorm over axis 1 of an NCHW map (:class:`convattn.layers.ChannelLayerNorm`) in one kernel, without the
    transposes; parameters ``gamma``/``beta`` as any LayerNorm."""

    channels_first = True

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps)


BN_ACTS = (None, "relu", "add_relu")


def _bn_ops(act):
    """``(infer, train)`` Custom primitives of BatchNorm followed by ``act`` (:data:`BN_ACTS`), with bprops:
    ``infer(x, gamma, beta, mean, var, eps[, res]) -> y`` and ``train(x, gamma, beta, moving_mean, moving_var,
    hyper[, res]) -> (y, mean, var, new_moving_mean, new_moving_var)`` (``hyper`` = [eps, momentum]; ``res`` for
    ``add_relu``). The running statistics get no gradient; the statistics outputs of ``train`` feed the running
    update, which has none, so only ``y``'s gradient flows."""
    require_library()
    stem = {None: "", "relu": "_relu", "add_relu": "_add_relu"}[act]
    residual = act == "add_relu"

    def grad_shape(x, g, *_):
        return (x, g, g, x) if residual else (x, g, g)

    infer_grad = custom_primitive(f"bn_infer{stem}_grad", "", grad_shape, out_dtype=grad_shape)
    train_grad = custom_primitive(f"bn_train{stem}_grad", "", grad_shape, out_dtype=grad_shape)

    def backward(grad, x, gamma, mean, var, hyper, y, dy):
        return grad(x, gamma, mean, var, hyper, dy) if act is None else grad(x, gamma, mean, var, hyper, dy, y)

    if residual:
        def infer_bprop(x, gamma, beta, mean, var, eps, res, out, dout):
            dx, dgamma, dbeta, dres = backward(infer_grad, x, gamma, mean, var, eps, out, dout)
            return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(eps), dres

        def train_bprop(x, gamma, beta, mm, mv, hyper, res, out, dout):
            dx, dgamma, dbeta, dres = backward(train_grad, x, gamma, out[1], out[2], hyper, out[0], dout[0])
            return dx, dgamma, dbeta, ops.zeros_like(mm), ops.zeros_like(mv), ops.zeros_like(hyper), dres
    else:
        def infer_bprop(x, gamma, beta, mean, var, eps, out, dout):
            dx, dgamma, dbeta = backward(infer_grad, x, gamma, mean, var, eps, out, dout)
            return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(eps)

        def train_bprop(x, gamma, beta, mm, mv, hyper, out, dout):
            dx, dgamma, dbeta = backward(train_grad, x, gamma, out[1], out[2], hyper, out[0], dout[0])
            return dx, dgamma, dbeta, ops.zeros_like(mm), ops.zeros_like(mv), ops.zeros_like(hyper)

    def infer_shape(x, *_):
        return x

    def train_shape(x, g, *_):
        return (x, g, g, g, g)

    infer = custom_primitive(f"bn_infer{stem}", "", infer_shape, infer_bprop, out_dtype=infer_shape)
    train = custom_primitive(f"bn_train{stem}", "", train_shape, train_bprop, out_dtype=train_shape)
    return infer, train


class _BnInferKernel(Float32Cell):
    """BatchNorm (+ its activation) with the running statistics in one kernel."""

    def __init__(self, eps: float, op) -> None:
        super().__init__()
        self.op = op
        self.eps_value = ms.Tensor([eps], ms.float32)

    def construct(self, x, gamma, beta, mean, var, residual=None):
        f32 = ms.float32
        args = (x.astype(f32), gamma.astype(f32), beta.astype(f32), mean.astype(f32), var.astype(f32), self.eps_value)
        if residual is not None:
            args = args + (residual.astype(f32),)
        return self.op(*args).astype(x.dtype)


class _BnTrainKernel(Float32Cell):
    """BatchNorm (+ its activation) with the batch statistics in one kernel, which also computes the running
    statistics' new values; the cell assigns them (the update MindSpore's training BatchNorm makes)."""

    def __init__(self, eps: float, momentum: float, op) -> None:
        super().__init__()
        self.op = op
        self.hyper = ms.Tensor([eps, momentum], ms.float32)

    def construct(self, x, gamma, beta, moving_mean, moving_var, residual=None):
        f32 = ms.float32
        args = (x.astype(f32), gamma.astype(f32), beta.astype(f32), moving_mean.astype(f32), moving_var.astype(f32),
                self.hyper)
        if residual is not None:
            args = args + (residual.astype(f32),)
        y, _, _, new_mean, new_var = self.op(*args)
        y = ops.depend(y, ops.assign(moving_mean, ops.stop_gradient(new_mean).astype(moving_mean.dtype)))
        y = ops.depend(y, ops.assign(moving_var, ops.stop_gradient(new_var).astype(moving_var.dtype)))
        return y.astype(x.dtype)


class FusedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (NCHW, ``use_batch_statistics=None``), optionally followed by ``act`` (``'relu'``, or
    ``'add_relu'``: ``construct(x, residual)`` = ReLU(BN(x) + residual)), as one fused CPU kernel with its
    gradient: in evaluation with the running statistics, in training with the batch statistics, whose running
    update (``momentum`` the weight of the old value, the unbiased batch variance, as MindSpore's BatchNorm) the
    same kernel computes. Parameters as ``nn.BatchNorm2d``."""

    fused = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9, act=None, **kwargs) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        if act not in BN_ACTS:
            raise ValueError(f"act must be one of {BN_ACTS}, got {act!r}")
        if self.use_batch_statistics is not None or self.format != "NCHW":
            raise ValueError("FusedBatchNorm2d needs NCHW and use_batch_statistics=None")
        self.act = act
        infer, train = _bn_ops(act)
        self.kernel, self.train_kernel = _BnInferKernel(eps, infer), _BnTrainKernel(eps, momentum, train)

    def construct(self, x, residual=None):
        if self.training:
            return self.train_kernel(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, residual)
        return self.kernel(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, residual)
