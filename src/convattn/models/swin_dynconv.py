"""Swin Transformer with the dynamic-convolution attention variants of "Interpret Vision Transformers as
ConvNets with Dynamic Convolutions" (Zhou, Loy, Dai; arXiv 2309.10713; no official code).

The network is :class:`convattn.models.swin.SwinTransformer` (one window-attention implementation); only the
attention core inside each window changes (:mod:`convattn.layers.dynamic_attention`):

- ``swin_tiny_relu``: ReLU instead of softmax, divided by the window's token count; the relative position
  bias is added to the attention weights after the activation (o_i = (relu(q_i k^T / sqrt(C_h)) / N + p_i) v).
- ``swin_tiny_dw``: depth-wise self-attention; per query the key kernels of its window (of its region, in
  shifted windows) are averaged into one and multiplied element-wise with the query, plus sum_j p_ij k_j.
  No value bank: each block's projection is ``attn.qk`` (2C outputs).
"""
from .builder import register_variants
from .registry import model_cfg, unreleased_weights
from .swin import SwinTransformer

__all__ = []

_PAPER = "Interpret Vision Transformers as ConvNets with Dynamic Convolutions (arXiv 2309.10713)"


def _cfg(**kwargs):
    return model_cfg(
        crop_pct=0.875, interpolation="bicubic", first_conv="patch_embed.proj", classifier="head", paper=_PAPER,
        upstream=None, convert_rules="acmix_swin", top1=None,
        small_kwargs={"img_size": 64, "embed_dim": 16, "depths": (2, 2, 1, 1), "num_heads": (1, 2, 2, 4),
                     "window_size": 4},
        small_input_size=(3, 64, 64), **kwargs,
    )


_NONE = unreleased_weights("the dynamic-convolution ViT paper released no code and no weights")
default_cfgs = {"swin_tiny_relu": _cfg(weights=_NONE), "swin_tiny_dw": _cfg(weights=_NONE)}


_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.2)
VARIANTS = {
    # ReLU window attention (default normalisation: divide by the window's token count); 28.29 M params
    "swin_tiny_relu": dict(_SWIN_T, attn_act="relu"),
    # depth-wise window self-attention (no value bank)
    "swin_tiny_dw": dict(_SWIN_T, attn="depthwise"),
}

register_variants(__name__, SwinTransformer, VARIANTS, default_cfgs)
