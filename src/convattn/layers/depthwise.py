"""Depth-wise convolution with bias, stride 1 and "same" padding (VAN's large-kernel attention and MLP):
:func:`depthwise_conv` builds ``nn.Conv2d``, or in a network built with the CPU backend its fused form
(:class:`convattn.cpu.depthwise.DepthwiseConv2d`; same parameters)."""
from mindspore import nn

from .targets import cpu_cell

__all__ = ["depthwise_conv"]


def depthwise_conv(dim: int, kernel_size: int, dilation: int = 1, **kwargs) -> nn.Conv2d:
    """Depth-wise ``kernel_size`` convolution with bias, stride 1, dilation ``dilation`` and padding
    ``dilation * (kernel_size - 1) // 2``."""
    return cpu_cell("depthwise_conv", dim, kernel_size, dilation, **kwargs) or \
        nn.Conv2d(dim, dim, kernel_size, pad_mode="pad", padding=dilation * (kernel_size - 1) // 2,
                  dilation=dilation, group=dim, has_bias=True, **kwargs)
