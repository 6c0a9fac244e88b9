"""Dense layers with a fused CPU bias.

``nn.Dense`` adds its bias with ``BiasAdd``, whose gradient on MindSpore 2.10's CPU, ``BiasAddGrad``, is a slow
column reduction (5-14 % of a Swin, DeiT or PVT training step in the ``convattn.bench`` op profile; a plain
``ReduceSum`` is 4x faster, a vectorised per-thread sum 30x). :class:`Linear` is an ``nn.Dense`` (same
parameters, ``weight`` and ``bias``, same cell type) whose ``fused`` form adds the bias with the ``bias_add``
kernel and sums its gradient with ``bias_sum`` (``kernels/local_window.cc``); the matrix product stays
MindSpore's ``MatMul``. :func:`dense` builds it for the CPU target where the kernels are available and plain
``nn.Dense`` elsewhere; the ``fused`` flag switches back (:func:`convattn.layers.set_fused_kernels`, export).

Where the private AVX-512 GEMM library is ready (:mod:`convattn.layers.gemm`) the fused form is the whole layer in
one kernel, ``linear`` (``x w^T + b`` through oneDNN's sgemm of that library), with ``linear_grad`` (``dy w``,
``dy^T x`` and the bias sum) as its gradient: MindSpore's ``MatMul`` under the process's AVX2 cap was 58-77 % of
a Swin, DeiT or PVT forward.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from .fused_window import Float32Cell, custom_primitive, fused_kernels_available, require_library
from ..cpu.gemm import gemm_library

__all__ = ["dense", "Linear", "FusedBiasAdd", "FusedLinear"]


class FusedBiasAdd(Float32Cell):
    """``construct(x, b)``: ``x + b`` over the last axis, float32 inside; its bias gradient is one vectorised
    per-thread column sum."""

    def __init__(self) -> None:
        super().__init__()
        require_library()
        bias_sum = custom_primitive("bias_sum", "", lambda dy, b: b)

        def bprop(x, b, out, dout):
            return dout, bias_sum(dout, b)

        self.op = custom_primitive("bias_add", "", lambda x, b: x, bprop)

    def construct(self, x, b):
        return self.op(x.astype(ms.float32), b.astype(ms.float32)).astype(x.dtype)


def _linear_op():
    require_library()
    grad = custom_primitive("linear_grad", "", lambda x, w, dy: (x, w, (w[0],)),
                            out_dtype=lambda x, w, dy: (x, w, w))

    def bprop(x, w, b, out, dout):
        return grad(x, w, dout)

    return custom_primitive("linear", "", lambda x, w, b: (x[0], w[0]), bprop, out_dtype=lambda x, w, b: x)


class FusedLinear(Float32Cell):
    """``construct(x, w, b)``: ``x w^T + b`` for ``x`` ``(M, K)``, ``w`` ``(N, K)``, in one GEMM of the private
    AVX-512 oneDNN copy, float32 inside."""

    def __init__(self) -> None:
        super().__init__()
        self.op = _linear_op()

    def construct(self, x, w, b):
        f32 = ms.float32
        return self.op(x.astype(f32), w.astype(f32), b.astype(f32)).astype(x.dtype)


class Linear(nn.Dense):
    """``nn.Dense`` without activation whose ``fused=True`` form (where the kernels are available) is one
    :class:`FusedLinear` GEMM where the private GEMM library is ready, else MindSpore's ``MatMul`` with
    :class:`FusedBiasAdd`."""

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, fused: bool = True,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, has_bias=has_bias, **kwargs)
        if self.activation_flag:
            raise ValueError("convattn.layers.Linear has no activation; apply it after the layer")
        available = fused_kernels_available()
        gemm = available and gemm_library() is not None
        self.fused_capable = available and (has_bias or gemm)  # without a bias only the GEMM form is faster
        self.fused = bool(fused) and self.fused_capable
        self.bias_op = FusedBiasAdd() if self.fused_capable and has_bias else None
        self.gemm_op = FusedLinear() if self.fused_capable and gemm else None
        # the GEMM kernel always adds a bias: zeros (a constant, its gradient unused) for a layer without one
        self.zero_bias = None if has_bias else Tensor(np.zeros((out_channels,), np.float32))

    def construct(self, x):
        if not self.fused:
            return super().construct(x)
        shape = x.shape
        if len(shape) != 2:
            x = x.reshape(-1, shape[-1])
        if self.gemm_op is not None:
            x = self.gemm_op(x, self.weight, self.bias if self.has_bias else self.zero_bias)
        else:
            x = self.bias_op(self.matmul(x, self.weight), self.bias)
        if len(shape) != 2:
            x = x.reshape(shape[:-1] + (x.shape[-1],))
        return x


def dense(in_channels: int, out_channels: int, has_bias: bool = True, **kwargs) -> nn.Dense:
    """A Dense layer: :class:`Linear` in a network built for the CPU target (kernels available; without a bias, the
    private GEMM library too), ``nn.Dense`` elsewhere. Same parameters either way."""
    from .targets import cell_kernels_allowed  # here: targets imports this module's neighbours

    if cell_kernels_allowed() and (has_bias or gemm_library() is not None):
        return Linear(in_channels, out_channels, has_bias=has_bias, **kwargs)
    return nn.Dense(in_channels, out_channels, has_bias=has_bias, **kwargs)
