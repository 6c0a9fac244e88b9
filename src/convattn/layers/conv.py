"""Dense convolutions with a fused CPU form: im2col + the private AVX-512 GEMM.

``import convattn`` caps MindSpore's oneDNN at AVX2 (:mod:`convattn._env`), and under the cap MindSpore's CPU
``Conv2D`` (and its two gradients) runs oneDNN's gemm convolution at about half the speed the machine allows
(``convattn.bench`` op profile: Conv2D 38 % of a VAN-B0 forward; ResNet-26 at 1.97x the official PyTorch code).
:class:`GemmConv2d` is an ``nn.Conv2d`` (same ``weight`` ``(O, C, kh, kw)`` and ``bias``, same cell type) whose
``fused`` form runs ``conv`` / ``conv_grad`` of ``kernels/local_window.cc``: each image's output pixels in blocks,
``y = w . im2col(x)`` through ``dnnl_sgemm`` of the private oneDNN copy of :mod:`convattn.layers.gemm` (a 1x1
stride-1 convolution multiplies the map in place), the input gradient as ``col2im(w^T dy)`` and the weight
gradient as ``dy . im2col(x)^T``. Groups 1 only (depth-wise convolutions have :mod:`convattn.layers.depthwise`).
:func:`conv2d` builds it for the CPU target where the kernels and the library are available and plain
``nn.Conv2d`` elsewhere; the ``fused`` flag switches back (:func:`convattn.layers.set_fused_kernels`, export).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .fused_window import Float32Cell, custom_primitive, fused_kernels_available, require_library
from ..cpu.gemm import gemm_library

__all__ = ["conv2d", "GemmConv2d", "conv_padding"]


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _explicit_pads(pad_mode: str, padding):
    """``(top, bottom, left, right)`` of a ``valid`` or ``pad`` convolution; None for ``same`` (size-dependent)."""
    if pad_mode == "same":
        return None
    if pad_mode == "valid":
        return 0, 0, 0, 0
    if pad_mode == "pad":
        return (padding,) * 4 if isinstance(padding, int) else tuple(int(p) for p in padding)
    raise ValueError(f"pad_mode must be 'same', 'valid' or 'pad', got {pad_mode!r}")


def conv_padding(pad_mode: str, padding, kernel_size, stride, dilation, size):
    """``(pad_top, pad_left, out_h, out_w)`` of an ``nn.Conv2d`` with these arguments on an ``(H, W)`` input
    (MindSpore's rules: ``same`` pads ``max(0, (out-1)*s + d*(k-1) + 1 - in)`` with the smaller half first)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    h, w = size
    pads = _explicit_pads(pad_mode, padding)
    if pads is None:
        out = (math.ceil(h / sh), math.ceil(w / sw))
        total = (max(0, (out[0] - 1) * sh + dh * (kh - 1) + 1 - h), max(0, (out[1] - 1) * sw + dw * (kw - 1) + 1 - w))
        return total[0] // 2, total[1] // 2, out[0], out[1]
    top, bottom, left, right = pads
    out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    return top, left, out_h, out_w


class _ConvKernel(Float32Cell):
    """The fused kernel call, float32 inside (a sub-cell so that AMP flags cannot cast its inputs to float16)."""

    def __init__(self, kernel_size, stride, pad_mode, padding, dilation) -> None:
        super().__init__()
        require_library()
        sh, sw = _pair(stride)
        dh, dw = _pair(dilation)

        def out_shape(x, w, b, g):
            _, _, oh, ow = conv_padding(pad_mode, padding, kernel_size, stride, dilation, (x[2], x[3]))
            return (x[0], w[0], oh, ow)

        tag = f"k{_pair(kernel_size)}-s{(sh, sw)}-d{(dh, dw)}-{pad_mode}{padding}"
        grad = custom_primitive("conv_grad", "", lambda x, w, b, g, dy: (x, w, b), tag=tag,
                                out_dtype=lambda x, w, b, g, dy: (x, w, b))

        def bprop(x, w, b, g, out, dout):
            dx, dw_, db = grad(x, w, b, g, dout)
            return dx, dw_, db, ops.zeros_like(g)

        self.op = custom_primitive("conv", "", out_shape, bprop, tag=tag, out_dtype=lambda x, w, b, g: x)
        pads = _explicit_pads(pad_mode, padding)
        top, left = (-1, -1) if pads is None else (pads[0], pads[2])  # -1: the kernel computes "same" from the sizes
        self.geometry = Tensor(np.array([sh, sw, top, left, dh, dw], np.int32))

    def construct(self, x, w, b):
        f32 = ms.float32
        return self.op(x.astype(f32), w.astype(f32), b.astype(f32), self.geometry).astype(x.dtype)


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d`` (groups 1, NCHW) whose ``fused=True`` form (where the kernels and the private GEMM library are
    available) runs the im2col + GEMM CPU kernels, float32 inside."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, pad_mode: str = "same",
                 padding=0, dilation=1, group: int = 1, has_bias: bool = False, fused: bool = True, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                         dilation=dilation, group=group, has_bias=has_bias, **kwargs)
        self.fused_capable = (group == 1 and kwargs.get("data_format", "NCHW") == "NCHW" and fused_kernels_available()
                              and gemm_library() is not None)
        self.fused = bool(fused) and self.fused_capable
        self.kernel = _ConvKernel(kernel_size, stride, pad_mode, padding, dilation) if self.fused_capable else None
        # the kernel always adds a bias: zeros (a constant, its gradient unused) for a convolution without one
        self.zero_bias = None if has_bias else Tensor(np.zeros((out_channels,), np.float32))

    def construct(self, x):
        if self.fused:
            return self.kernel(x, self.weight, self.bias if self.has_bias else self.zero_bias)
        return super().construct(x)


def conv2d(in_channels: int, out_channels: int, kernel_size, stride=1, pad_mode: str = "same", padding=0,
           dilation=1, group: int = 1, has_bias: bool = False, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d`` with MindSpore's arguments: :class:`GemmConv2d` in a network built for the CPU target (groups
    1, kernels and the private GEMM library available), ``nn.Conv2d`` elsewhere. Same parameters either way."""
    from .targets import cell_kernels_allowed  # here: targets imports this module's neighbours

    if group == 1 and cell_kernels_allowed() and gemm_library() is not None:
        return GemmConv2d(in_channels, out_channels, kernel_size, stride, pad_mode, padding, dilation, group,
                          has_bias, **kwargs)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                     dilation=dilation, group=group, has_bias=has_bias, **kwargs)
