"""Reflection padding (PyTorch's ``'reflect'``) as fused CPU kernels, with the gradient.

MindSpore's CPU ``MirrorPad`` and ``MirrorPadGrad`` compute an index per element (``convattn.bench`` op profile:
7 % of an ACmix-ResNet-26 forward, for maps that the window kernels then read once). ``reflect_pad`` copies rows;
``reflect_pad_sub`` pads ``x - s`` in the same pass (ACmix's keys minus the position encoding, ``s`` broadcast over
the batch); ``reflect_unpad`` adds each padded element's gradient to the element it copies.
"""
import mindspore as ms
from mindspore import ops

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedReflectionPad2d", "FusedReflectPadSub"]


def _padded(p):
    return lambda x, *rest: (x[0], x[1], x[2] + 2 * p, x[3] + 2 * p)


class _PadCell(Float32Cell):
    """What both padding cells share: the padding, the library, the gradient primitive ``reflect_unpad``."""

    fused = True

    def __init__(self, padding: int) -> None:
        super().__init__()
        require_library()
        self.padding = int(padding)
        self.tag = f"p{self.padding}"
        self.unpad = custom_primitive("reflect_unpad", "", lambda dxp, x: x, tag=self.tag)

    def extend_repr(self):
        return f"padding={self.padding}, fused=True"


class FusedReflectionPad2d(_PadCell):
    """``nn.ReflectionPad2d(p)`` (the same padding on all four sides) of an NCHW map, float32 inside."""

    def __init__(self, padding: int) -> None:
        super().__init__(padding)
        unpad = self.unpad

        def bprop(x, out, dout):
            return (unpad(dout, x),)

        self.op = custom_primitive("reflect_pad", "", _padded(self.padding), bprop, inputs=1, tag=self.tag)

    def construct(self, x):
        return self.op(x.astype(ms.float32)).astype(x.dtype)


class FusedReflectPadSub(_PadCell):
    """``reflect_pad(x - s, p)`` in one pass; ``s`` is ``(1 or N, C, H, W)`` and broadcast over the batch."""

    def __init__(self, padding: int) -> None:
        super().__init__(padding)
        unpad = self.unpad

        def bprop(x, s, out, dout):
            dx = unpad(dout, x)
            ds = -dx if s.shape[0] == x.shape[0] else -ops.sum(dx, 0, keepdim=True)
            return dx, ds

        self.op = custom_primitive("reflect_pad_sub", "", _padded(self.padding), bprop, tag=self.tag)

    def construct(self, x, s):
        f32 = ms.float32
        return self.op(x.astype(f32), s.astype(f32)).astype(x.dtype)
