"""Padded max pooling with a fused CPU form (the ResNet stem).

``nn.MaxPool2d(pad_mode='pad')`` lowers to ``MaxPool3DWithArgmax``, which MindSpore 2.10 runs slowly on the CPU
(``convattn.bench`` op profile: 19 % of a ResNet-26 forward, 72 ms for the 8x64x112^2 stem pool). :class:`FusedMaxPool2d`
is that ``nn.MaxPool2d`` (same attributes and cell type, so export swaps it for
:class:`convattn.deploy.ExportSafeMaxPool2d` like any padded pool) whose ``fused`` form runs ``max_pool`` /
``max_pool_grad`` of ``kernels/local_window.cc`` (implicit -inf padding, the argmax kept for the gradient).
:func:`max_pool2d` builds it for the CPU target where the kernels are available and plain ``nn.MaxPool2d``
elsewhere; the ``fused`` flag switches back (:func:`convattn.layers.set_fused_kernels`).
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .conv import conv_padding
from .fused_window import Float32Cell, custom_primitive, fused_kernels_available, require_library

__all__ = ["max_pool2d", "FusedMaxPool2d"]


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
    """``nn.MaxPool2d(kernel_size, stride, pad_mode='pad', padding)`` (square, no dilation or ceil mode) whose
    ``fused=True`` form (where the kernels are available) runs the fused CPU kernels, float32 inside. Equal values
    and gradients for finite and infinite inputs (ties: the first maximum in the window); a NaN input is skipped
    rather than propagated."""

    def __init__(self, kernel_size: int, stride: int, padding: int, fused: bool = True) -> None:
        super().__init__(kernel_size=kernel_size, stride=stride, pad_mode="pad", padding=padding)
        self.fused_capable = fused_kernels_available()
        self.fused = bool(fused) and self.fused_capable
        self.kernel = _MaxPoolKernel(kernel_size, stride, padding) if self.fused_capable else None

    def construct(self, x):
        if self.fused:
            return self.kernel(x)
        return super().construct(x)


def max_pool2d(kernel_size: int, stride: int, padding: int) -> nn.MaxPool2d:
    """``nn.MaxPool2d(kernel_size, stride, pad_mode='pad', padding=padding)``: :class:`FusedMaxPool2d` in a network
    built for the CPU target (kernels available), ``nn.MaxPool2d`` elsewhere."""
    from .targets import cell_kernels_allowed  # here: targets imports this module's neighbours

    if cell_kernels_allowed():
        return FusedMaxPool2d(kernel_size, stride, padding)
    return nn.MaxPool2d(kernel_size=kernel_size, stride=stride, pad_mode="pad", padding=padding)
