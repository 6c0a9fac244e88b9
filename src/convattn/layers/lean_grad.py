"""Standard-cell formulations whose backward keeps only what it cannot rebuild cheaply.

MindSpore 2.10's graph-mode autodiff keeps, for the backward pass, whatever the primitives' generic gradients
reference, and for a chain of standard operators that is far more than the gradient needs: measured on CPU (GRAPH
mode, process RSS high-water, per image, Swin-T stage-1 tokens 56x56x96), ``nn.GELU(approximate=False)`` keeps
about five copies of its input where its gradient needs one, and the window attention (head transposes, q/k/v
split, ``BatchMatMul``, broadcast bias add, ``Softmax``) about 57 MB where the official PyTorch code keeps about 9.

A :class:`mindspore.nn.Cell` with its own ``bprop`` changes that: the forward's internals are not differentiated,
and only what ``bprop`` reads (its inputs, its output) stays alive until the backward pass. The cells here are
such cells, each computing the same values as the standard operators (``tests/test_lean_grad.py``):

* :class:`LeanGELU`: the exact GELU; its gradient ``Phi(x) + x phi(x)`` is rebuilt from the input alone. In
  Swin-T's Ascend form (training step, batches 4 and 12, 224^2) it takes the per-image slope from 638 to 416 MB,
  and the CPU step is no slower (its explicit gradient is cheaper than the generic one).

The layout transposes are the other large item: ``ops.transpose`` keeps about two copies of its tensor per call
until the backward pass, ``mint.permute`` (a view) none; written with ``mint.permute``, Swin-T's Ascend form
drops a further 416 -> 310 MB per image, but its CPU training step gets 25-30 % slower (the views are copied back
by slow CPU kernels), so it is not used here (it is the next step where the Ascend step time can be measured).

MindSpore's own ``Cell.recompute()`` keeps more, not less, in a CPU graph (measured: the window attention 57 -> 73
MB per image), so the rebuild is written out where it pays; a hand-written backward of the whole window attention
(the projections kept, the map recomputed) saved little there and cost time, so it is not used.
"""
from mindspore import nn, ops

__all__ = ["LeanGELU"]

_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


class LeanGELU(nn.GELU):
    """``nn.GELU(approximate=False)`` (same type, same values) whose backward keeps only the input."""

    def __init__(self) -> None:
        super().__init__(approximate=False)

    def construct(self, x):
        return x * (ops.erf(x * _SQRT1_2) + 1.0) * 0.5

    def bprop(self, x, out, dout):
        cdf = (ops.erf(x * _SQRT1_2) + 1.0) * 0.5
        pdf = ops.exp(x * x * -0.5) * _INV_SQRT_2PI
        return (dout * (cdf + x * pdf),)

