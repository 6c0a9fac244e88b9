"""An exact (erf) GELU built only from operators MindSpore 2.10's ONNX exporter supports.

``mindspore.onnx.export`` has no ``Erf`` (``nn.GELU(approximate=False)`` and ``ops.erf`` both fail with
"Can not find key Erf in convert map"), and ``nn.GELU()`` exports the tanh approximation, which differs
from the exact GELU by up to ~1e-3. :class:`ExportSafeGELU` computes

    GELU(x) = x * Phi(x) = relu(x) - |x| * h,   h = 0.5 * erfc(|x| / sqrt(2)) = Phi(-|x|)

(for x >= 0, x * (1 - h); for x < 0, x * h), with erfc from the Abramowitz & Stegun 7.1.26
rational-exponential form (absolute error <= 1.5e-7), ``erfc(z) = t * P(t) * exp(-z^2)``,
``t = 1 / (1 + p z)``. Writing it through erfc avoids the cancellation ``1 + erf(x)`` would suffer for
negative x, and the relu form avoids ``Sign``, which the exporter also lacks. Only Relu, Abs, Mul, Add,
Sub, Div, Exp appear (``1 / d`` is written as a Div of a constant: Reciprocal is missing too);
in float32 it matches MindSpore's own exact GELU to float32 rounding (``tests/test_export.py``).
"""
import math

from mindspore import Tensor, nn, ops
import mindspore as ms

__all__ = ["ExportSafeGELU"]

_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


class ExportSafeGELU(nn.Cell):
    """Exact GELU (erf form) without the Erf operator; a drop-in for ``nn.GELU(approximate=False)``."""

    def __init__(self) -> None:
        super().__init__()
        self.one = Tensor(1.0, ms.float32)  # ``1.0 / d`` becomes Reciprocal, which the exporter also lacks

    def construct(self, x):
        z = ops.abs(x) * _INV_SQRT2
        t = ops.div(ops.cast(self.one, x.dtype), 1.0 + _P * z)
        poly = ((((_A[4] * t + _A[3]) * t + _A[2]) * t + _A[1]) * t + _A[0]) * t
        h = 0.5 * poly * ops.exp(-z * z)
        return ops.relu(x) - ops.abs(x) * h
