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

All figures above are process RSS on CPU. Most of the remaining RSS of the standard forms is not the graph's:
MindSpore's CPU ``Transpose``, ``Softmax``, ``Gather`` and depth-wise ``Conv2D`` kernels allocate scratch beside
the memory pool (about four copies of their input). No device runs them, and the pool (the graph's tensors) holds
only 109 MB per image for Swin-T; see scripts/README.md, "Training memory per image". For the same reason
``Cell.recompute()`` raises the CPU RSS (the recomputed kernels' scratch) while it lowers the pool, the device
figure (two Swin-T blocks: 55 -> 32 MB per image); it is the ``recompute`` config key
(:func:`convattn.models.set_recompute`).
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

