"""Convolutions: :func:`conv2d` builds ``nn.Conv2d``, or in a network built with the CPU backend (groups 1) its
fused im2col + GEMM form (:class:`convattn.cpu.conv.GemmConv2d`; same parameters)."""
from mindspore import nn

from .targets import cpu_cell

__all__ = ["conv2d"]


def conv2d(in_channels: int, out_channels: int, kernel_size, stride=1, pad_mode: str = "same", padding=0,
           dilation=1, group: int = 1, has_bias: bool = False, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d`` with MindSpore's arguments; the CPU backend's fused form where the network uses it."""
    fused = cpu_cell("conv2d", in_channels, out_channels, kernel_size, stride, pad_mode, padding, dilation, group,
                     has_bias, **kwargs)
    if fused is not None:
        return fused
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                     dilation=dilation, group=group, has_bias=has_bias, **kwargs)
