"""Exact (erf) GELU as one fused CPU kernel, with its gradient.

MindSpore 2.10's CPU ``Erf`` kernel is a scalar loop: on a 2-core machine the exact GELU of one Swin-T stage-1
MLP (8 x 3136 x 384 values) costs more than the two Dense layers around it (``convattn.bench`` op profile). The
kernel (``gelu`` / ``gelu_grad``) computes the same function, ``x * Phi(x)``, in one vectorised pass over all
cores, and its gradient ``dy * (Phi(x) + x * phi(x))`` in another; erf is Abramowitz & Stegun 7.1.26 (|error| <=
1.5e-7) written through ``erfc``; ``tests/test_fused_gelu.py`` holds it to 1e-6 of the float64 GELU.
"""
import mindspore as ms
from mindspore import nn

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedGELU"]


def _gelu_op():
    require_library()
    grad = custom_primitive("gelu_grad", "", lambda x, dy: x)

    def bprop(x, out, dout):
        return (grad(x, dout),)

    return custom_primitive("gelu", "", lambda x: x, bprop, inputs=1)


class FusedGELU(Float32Cell, nn.GELU):
    """``nn.GELU(approximate=False)`` run by the fused CPU kernel, float32 inside."""

    fused = True

    def __init__(self) -> None:
        nn.GELU.__init__(self, approximate=False)
        self.op = _gelu_op()

    def extend_repr(self):
        return "fused=True"

    def construct(self, x):
        return self.op(x.astype(ms.float32)).astype(x.dtype)
