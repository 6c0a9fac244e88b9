"""Depth-wise convolution (stride 1, odd ``k``, any dilation, "same" zero padding, bias) as fused CPU kernels
(``dw_conv`` / ``dw_conv_grad``): MindSpore's depth-wise ``Conv2D`` runs under 1 GMAC/s on the CPU and its
``Conv2DBackpropFilter`` was two thirds of a VAN-B0 training step."""
import mindspore as ms
from mindspore import nn, ops

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["DepthwiseConv2d"]


def _dw_conv_op():
    require_library()
    grad = custom_primitive("dw_conv_grad", "", lambda x, w, dy, d: (x, w, (w[0],)),
                            out_dtype=lambda x, w, dy, d: (x, w, w))

    def bprop(x, w, b, d, out, dout):
        dx, dw, db = grad(x, w, dout, d)
        return dx, dw, db, ops.zeros_like(d)

    return custom_primitive("dw_conv", "", lambda x, w, b, d: x, bprop, out_dtype=lambda x, w, b, d: x)


class _DwKernel(Float32Cell):
    """The fused kernel call, float32 inside (a sub-cell so that AMP flags cannot cast its inputs to float16)."""

    def __init__(self, dilation: int) -> None:
        super().__init__()
        self.op = _dw_conv_op()
        self.dilation = ms.Tensor([dilation], ms.int32)

    def construct(self, x, w, b):
        f32 = ms.float32
        return self.op(x.astype(f32), w.astype(f32), b.astype(f32), self.dilation).astype(x.dtype)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, k, group=dim, padding=d(k-1)/2, dilation=d, has_bias=True)`` run by the fused CPU
    kernels."""

    fused = True

    def __init__(self, dim: int, kernel_size: int, dilation: int = 1, **kwargs) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv2d needs an odd kernel_size for 'same' padding, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, pad_mode="pad", padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation, group=dim, has_bias=True, **kwargs)
        self.kernel = _DwKernel(dilation)

    def construct(self, x):
        return self.kernel(x, self.weight, self.bias)
