"""Dense convolutions (groups 1) as fused CPU kernels: im2col + the runtime's GEMM.

MindSpore's CPU ``Conv2D`` (and its two gradients) under the oneDNN AVX2 cap runs at about half the speed the
machine allows (``convattn.bench`` op profile: Conv2D 38 % of a VAN-B0 forward). :class:`GemmConv2d` is an
``nn.Conv2d`` (same ``weight`` ``(O, C, kh, kw)`` and ``bias``) run by ``conv`` / ``conv_grad``: each image's
output pixels in blocks, ``y = w . im2col(x)`` (a 1x1 stride-1 convolution multiplies the map in place), the input
gradient as ``col2im(w^T dy)`` and the weight gradient as ``dy . im2col(x)^T``.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["GemmConv2d", "conv_padding"]


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
    """``nn.Conv2d`` (groups 1, NCHW) run by the im2col + GEMM CPU kernels, float32 inside."""

    fused = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, pad_mode: str = "same",
                 padding=0, dilation=1, group: int = 1, has_bias: bool = False, **kwargs) -> None:
        if group != 1 or kwargs.get("data_format", "NCHW") != "NCHW":
            raise ValueError("GemmConv2d runs groups 1, NCHW")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                         dilation=dilation, group=group, has_bias=has_bias, **kwargs)
        self.kernel = _ConvKernel(kernel_size, stride, pad_mode, padding, dilation)
        # the kernel always adds a bias: zeros (a constant, its gradient unused) for a convolution without one
        self.zero_bias = None if has_bias else Tensor(np.zeros((out_channels,), np.float32))

    def construct(self, x):
        return self.kernel(x, self.weight, self.bias if self.has_bias else self.zero_bias)
