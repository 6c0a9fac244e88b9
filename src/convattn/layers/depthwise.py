"""Depth-wise convolution with a fused CPU form (VAN's large-kernel attention and MLP).

On the CPU, MindSpore 2.10 runs a depth-wise ``Conv2D`` through oneDNN's gemm path (the ISA cap of
:mod:`convattn._env`): under 1 GMAC/s, and its ``Conv2DBackpropFilter`` was two thirds of a VAN-B0 training step
(``convattn.bench`` op profile). :class:`DepthwiseConv2d` is an ``nn.Conv2d`` (same ``weight`` ``(C, 1, k, k)``
and ``bias``, same cell type) whose ``fused`` form runs ``dw_conv`` / ``dw_conv_grad`` of
``kernels/local_window.cc``: stride 1, odd ``k``, any dilation, "same" zero padding ``d(k-1)/2``, with bias.
:func:`depthwise_conv` builds it for the CPU target where the kernels are available and plain ``nn.Conv2d``
elsewhere; the ``fused`` flag switches back (:func:`convattn.layers.set_fused_kernels`, export).
"""
import mindspore as ms
from mindspore import nn, ops

from .fused_window import Float32Cell, custom_primitive, fused_kernels_available, require_library

__all__ = ["depthwise_conv", "DepthwiseConv2d"]


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
    """``nn.Conv2d(dim, dim, k, group=dim, padding=d(k-1)/2, dilation=d, has_bias=True)`` whose ``fused=True``
    form (where the kernels are available) runs the fused CPU kernels."""

    def __init__(self, dim: int, kernel_size: int, dilation: int = 1, fused: bool = True, **kwargs) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv2d needs an odd kernel_size for 'same' padding, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, pad_mode="pad", padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation, group=dim, has_bias=True, **kwargs)
        self.fused_capable = fused_kernels_available()
        self.fused = bool(fused) and self.fused_capable
        self.kernel = _DwKernel(dilation) if self.fused_capable else None

    def construct(self, x):
        if self.fused:
            return self.kernel(x, self.weight, self.bias)
        return super().construct(x)


def depthwise_conv(dim: int, kernel_size: int, dilation: int = 1, **kwargs) -> nn.Conv2d:
    """Depth-wise ``kernel_size`` convolution with bias, stride 1, dilation ``dilation`` and "same" padding:
    :class:`DepthwiseConv2d` in a network built for the CPU target (kernels available), ``nn.Conv2d`` elsewhere.
    Same parameters either way."""
    from .targets import cell_kernels_allowed  # here: targets imports this module's neighbours

    if cell_kernels_allowed():
        return DepthwiseConv2d(dim, kernel_size, dilation, **kwargs)
    return nn.Conv2d(dim, dim, kernel_size, pad_mode="pad", padding=dilation * (kernel_size - 1) // 2,
                     dilation=dilation, group=dim, has_bias=True, **kwargs)
