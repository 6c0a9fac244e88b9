"""Non-overlapping patch embedding: ``patch x patch`` strided conv (bias) -> tokens ``(B, H/p * W/p, C)`` -> LayerNorm."""
from typing import Optional

from mindspore import nn, ops

from .conv import conv2d
from .norm import layer_norm

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Cell):
    """``proj`` (conv, kernel = stride = ``patch_size``, bias) -> flatten to tokens -> ``norm`` (a LayerNorm of
    eps ``norm_eps``; None: no norm). Parameter names ``proj.*``, ``norm.*`` as in Swin, PVT and timm's ViT.
    The networks check the input (channels, the size they were built for) before calling it."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_eps: Optional[float] = None) -> None:
        super().__init__()
        self.proj = conv2d(in_chans, embed_dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True)
        self.norm = layer_norm(embed_dim, norm_eps) if norm_eps is not None else nn.Identity()

    def construct(self, x):
        x = self.proj(x)
        b, c = x.shape[0], x.shape[1]
        return self.norm(ops.transpose(x.reshape(b, c, -1), (0, 2, 1)))
