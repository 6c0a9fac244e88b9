"""Large-kernel attention (VAN, Guo et al. 2022).

A K = 21 (dilation d = 3) convolution decomposed into a (2d - 1) = 5x5 depth-wise conv, a
ceil(K / d) = 7x7 depth-wise conv with dilation 3, and a 1x1 conv; the result multiplies the input
element-wise (no sigmoid/softmax: the official code and the authors' answer in VAN-Segmentation#2).
Sub-cell names follow the official ``LKA`` (``conv0``, ``conv_spatial``, ``conv1``) so converted
weights map by name.
"""
from mindspore import nn

from .conv import conv2d
from .depthwise import depthwise_conv
from .helpers import GELU

__all__ = ["LKA", "LKAAttention"]


class LKA(nn.Cell):
    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3) -> None:
        super().__init__()
        if dilation < 1 or kernel_size < dilation:
            raise ValueError(f"LKA needs kernel_size >= dilation >= 1, got kernel_size={kernel_size}, dilation={dilation}")
        local_k = 2 * dilation - 1
        dilated_k = -(-kernel_size // dilation)  # ceil
        if dilated_k % 2 == 0:
            dilated_k += 1
        self.conv0 = depthwise_conv(dim, local_k)
        self.conv_spatial = depthwise_conv(dim, dilated_k, dilation)
        self.conv1 = conv2d(dim, dim, 1, has_bias=True)

    def construct(self, x):
        attn = self.conv0(x)
        attn = self.conv_spatial(attn)
        attn = self.conv1(attn)
        return x * attn


class LKAAttention(nn.Cell):
    """VAN's ``Attention``: 1x1 -> GELU -> LKA -> 1x1, plus its own inner residual (kept as upstream)."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3) -> None:
        super().__init__()
        self.proj_1 = conv2d(dim, dim, 1, has_bias=True)
        self.activation = GELU()
        self.spatial_gating_unit = LKA(dim, kernel_size, dilation)
        self.proj_2 = conv2d(dim, dim, 1, has_bias=True)

    def construct(self, x):
        shortcut = x
        x = self.proj_1(x)
        x = self.activation(x)
        x = self.spatial_gating_unit(x)
        x = self.proj_2(x)
        return x + shortcut
