"""Dense layers as fused CPU kernels: the whole layer as one GEMM (``linear`` / ``linear_grad``) where the
runtime's GEMM is ready, else MindSpore's ``MatMul`` with a fused bias (``bias_add`` / ``bias_sum``: MindSpore's
``BiasAddGrad`` is a slow column reduction, 5-14 % of a Swin, DeiT or PVT training step)."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["Linear", "FusedBiasAdd", "FusedLinear"]


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
    """``nn.Dense`` without activation run by :class:`FusedLinear` (``gemm=True``) or ``MatMul`` +
    :class:`FusedBiasAdd`; same parameters (``weight``, ``bias``)."""

    fused = True

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, gemm: bool = True,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, has_bias=has_bias, **kwargs)
        if self.activation_flag:
            raise ValueError("convattn.cpu.Linear has no activation; apply it after the layer")
        if not (gemm or has_bias):
            raise ValueError("a Linear without bias is only faster as one GEMM (gemm=True)")
        self.bias_op = None if gemm else FusedBiasAdd()
        self.gemm_op = FusedLinear() if gemm else None
        # the GEMM kernel always adds a bias: zeros (a constant, its gradient unused) for a layer without one
        self.zero_bias = None if has_bias else Tensor(np.zeros((out_channels,), np.float32))

    def construct(self, x):
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
