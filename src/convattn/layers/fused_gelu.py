"""Exact (erf) GELU as one fused CPU kernel, with its gradient.

MindSpore 2.10's CPU ``Erf`` kernel is a scalar loop: on a 2-core machine the exact GELU of one Swin-T stage-1
MLP (8 x 3136 x 384 values) costs more than the two Dense layers around it (``convattn.bench`` op profile). The
fused kernel (``gelu`` / ``gelu_grad`` in ``kernels/local_window.cc``) computes the same function,
``x * Phi(x)`` with ``Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))``, in one vectorised pass over all cores, and its
gradient ``dy * (Phi(x) + x * phi(x))`` in another. erf is Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, the
form PyTorch's vectorised CPU erf uses), written through ``erfc`` so that negative inputs lose no precision;
``tests/test_fused_gelu.py`` holds it to 1e-6 of the float64 GELU and of MindSpore's own.

:class:`FusedGELU` is an ``nn.GELU(approximate=False)`` (so the export transforms, which replace the exact GELU by
an Erf-free one for ONNX, still see it) with a ``fused`` flag: :func:`convattn.layers.set_fused_kernels` and
:func:`convattn.deploy.prepare_for_export` switch it back to MindSpore's own ``ops.gelu``. It is used only in
networks built for the CPU target where the kernels are available (:func:`convattn.layers.helpers.GELU`).
"""
import mindspore as ms
from mindspore import nn, ops

from .fused_window import Float32Cell, custom_primitive, require_library, fused_kernels_available

__all__ = ["FusedGELU"]


def _gelu_op():
    require_library()
    grad = custom_primitive("gelu_grad", "", lambda x, dy: x)

    def bprop(x, out, dout):
        return (grad(x, dout),)

    return custom_primitive("gelu", "", lambda x: x, bprop, inputs=1)


class FusedGELU(Float32Cell, nn.GELU):
    """Exact GELU; ``fused=True`` (where the kernels are available) runs the fused CPU kernel, float32 inside."""

    def __init__(self, fused: bool = True) -> None:
        nn.GELU.__init__(self, approximate=False)
        self.fused_capable = fused_kernels_available()
        self.fused = bool(fused) and self.fused_capable
        self.op = _gelu_op() if self.fused_capable else None

    def extend_repr(self):
        return f"fused={self.fused}"

    def construct(self, x):
        if self.fused:
            return self.op(x.astype(ms.float32)).astype(x.dtype)
        return ops.gelu(x, approximate="none")
