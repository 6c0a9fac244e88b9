"""Padded max pooling (the ResNet stem) as fused CPU kernels (``max_pool`` / ``max_pool_grad``: implicit -inf
padding, the argmax kept for the gradient): ``nn.MaxPool2d(pad_mode='pad')`` lowers to ``MaxPool3DWithArgmax``,
19 % of a ResNet-26 forward on the CPU."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .conv import conv_padding
from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedMaxPool2d"]


class _MaxPoolKernel(Float32Cell):
    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        require_library()
        k, s, p = int(kernel_size), int(stride), int(padding)

        def out_shape(x, g):
            _, _, oh, ow = conv_padding("pad", p, k, s, 1, (x[2], x[3]))
            return ((x[0], x[1], oh, ow),) * 2

        grad = custom_primitive("max_pool_grad", "", lambda x, a, dy: x, out_dtype=lambda x, a, dy: x,
                                tag=f"k{k}s{s}p{p}")

        def bprop(x, g, out, dout):
            return grad(x, out[1], dout[0]), ops.zeros_like(g)

        self.op = custom_primitive("max_pool", "", out_shape, bprop, tag=f"k{k}s{s}p{p}",
                                   out_dtype=lambda x, g: (x, ms.int32))
        self.geometry = Tensor(np.array([k, k, s, s, p, p], np.int32))

    def construct(self, x):
        return self.op(x.astype(ms.float32), self.geometry)[0].astype(x.dtype)


class FusedMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d(kernel_size, stride, pad_mode='pad', padding)`` (square, no dilation or ceil mode) run by the
    fused CPU kernels, float32 inside. Equal values and gradients for finite and infinite inputs (ties: the first
    maximum in the window); a NaN input is skipped rather than propagated."""

    fused = True

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(kernel_size=kernel_size, stride=stride, pad_mode="pad", padding=padding)
        self.kernel = _MaxPoolKernel(kernel_size, stride, padding)

    def construct(self, x):
        return self.kernel(x)
