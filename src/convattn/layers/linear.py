"""Dense layers: :func:`dense` builds ``nn.Dense``, or in a network built with the CPU backend its fused form
(:class:`convattn.cpu.linear.Linear`: one GEMM, or MatMul + a fused bias; same parameters)."""
from mindspore import nn

from .targets import cpu_cell

__all__ = ["dense"]


def dense(in_channels: int, out_channels: int, has_bias: bool = True, **kwargs) -> nn.Dense:
    """A Dense layer (MindSpore's arguments); the CPU backend's fused form where the network uses it."""
    return cpu_cell("dense", in_channels, out_channels, has_bias, **kwargs) or \
        nn.Dense(in_channels, out_channels, has_bias=has_bias, **kwargs)
