"""MindSpore DeiT (ViT with a class token, patch 16) with pluggable attention activations and depth-wise attention.

Refer to "Training data-efficient image transformers & distillation through attention" (Touvron et al.,
arXiv 2012.12877) for the backbone and "Interpret Vision Transformers as ConvNets with Dynamic Convolutions"
(Zhou, Loy, Dai; arXiv 2309.10713) for the ``attn_act`` / ``attn='depthwise'`` variants (no official code).

Cell names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head``), so DeiT checkpoints
(facebookresearch/deit, timm ``deit_*_patch16_224``) convert by the generic renames (``convert_rules='deit'``).
The depth-wise variants replace ``attn.qkv`` by ``attn.qk`` (no value bank) and have no official weights.
"""
from typing import Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from ..layers import DropPath, DynamicAttention, Mlp, PatchEmbed, check_attention_args, check_nchw, layer_norm, to_2tuple
from .builder import check_out_indices, register_variants
from .registry import model_cfg, official_weights, unreleased_weights

__all__ = ["VisionTransformer"]

_PAPER = "DeiT (arXiv 2012.12877)"
_PAPER_DYN = "Interpret Vision Transformers as ConvNets with Dynamic Convolutions (arXiv 2309.10713)"
_UPSTREAM = "timm models/vision_transformer.py (deit_*_patch16_224); facebookresearch/deit"


def _cfg(top1=None, paper=_PAPER, upstream=_UPSTREAM, convert_rules="deit", **kwargs):
    return model_cfg(
        crop_pct=0.875, interpolation="bicubic", first_conv="patch_embed.proj", classifier="head",
        paper=paper, upstream=upstream, convert_rules=convert_rules, top1=top1,
        small_kwargs={"depth": 2, "embed_dim": 48, "img_size": 32}, small_input_size=(3, 32, 32), **kwargs,
    )


def _weights(file, prefix, top1):
    return official_weights(
        file, (f"https://dl.fbaipublicfiles.com/deit/{file}",), top1=top1, sha256_prefix=prefix,
        container="DeiT trainer: {'model': state_dict}",
        licence="Apache-2.0 (facebookresearch/deit); trained on ImageNet-1k")


_DYN = dict(paper=_PAPER_DYN, upstream=None, convert_rules=None,
            weights=unreleased_weights("the dynamic-convolution ViT paper released no code and no weights"))

default_cfgs = {
    "deit_tiny": _cfg(top1=72.2, weights=_weights("deit_tiny_patch16_224-a1311bcf.pth", "a1311bcf", 72.2)),
    "deit_small": _cfg(top1=79.8, weights=_weights("deit_small_patch16_224-cd65a155.pth", "cd65a155", 79.9)),
    # design-from-paper variants: no released weights, no official code
    "deit_tiny_relu": _cfg(**_DYN),
    "deit_small_relu": _cfg(**_DYN),
    "deit_tiny_dw": _cfg(**_DYN),
    "deit_small_dw": _cfg(**_DYN),
}


class Block(nn.Cell):
    """Pre-norm Transformer block: x + DropPath(attn(LN(x))), then x + DropPath(mlp(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, **attn_kwargs) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim, 1e-6)
        self.attn = DynamicAttention(dim, num_heads, qkv_bias, attn_drop=attn_drop, proj_drop=drop, **attn_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm(dim, 1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Cell):
    """ViT/DeiT with a class token and learned absolute position embedding.

    Args:
        img_size: input size the position embedding is built for (a multiple of ``patch_size``).
        patch_size, in_chans, num_classes (0: no head), embed_dim, depth, num_heads, mlp_ratio, qkv_bias.
        drop_rate, attn_drop_rate, drop_path_rate: dropout / stochastic depth (linear over the blocks).
        attn: ``'standard'`` or ``'depthwise'`` (paper §5.3: keep the key bank only, average all N key kernels
            into one, multiply element-wise).
        attn_act: ``'softmax'`` | ``'relu'`` | ``'identity'`` (default: softmax; identity for depth-wise).
        attn_norm: ``'none'`` | ``'token'`` (divide by N) | ``'layernorm'`` | ``'batchnorm'`` over the attention
            map (default for relu: ``'token'``). tau: temperature. norm_first: normalise before the activation.
        qk_scale: logit scale (default C_h ** -0.5; depth-wise: 1.0).
        rel_pos_embed: learn a relative position embedding per block (a per-head table over the 2-D patch offsets
            plus three class-token entries), kept beside DeiT's absolute one. The dynamic-convolution paper's
            finding is that "with relative position embedding" softmax can be replaced by ReLU; the ``_relu``
            models use it by default (``rel_pos_embed=False``: the first version), the softmax DeiT models not
            (official DeiT; ``rel_pos_embed=True`` gives the like-for-like baseline).
        rel_pos: where the term enters: ``'auto'`` (softmax: added to the logits; ReLU / identity: to the
            normalised weights, o = (a + p) v, as the paper writes for attention without softmax), ``'logits'``,
            ``'values'``.
        features_only / out_indices: return the token maps (B, C, H/16, W/16) after the blocks in ``out_indices``
            (default: every block) instead of logits.
    """

    recompute_unit = (Block,)  # set_recompute marks each of these

    def __init__(
        self,
        img_size=224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        attn: str = "standard",
        attn_act: Optional[str] = None,
        attn_norm: Optional[str] = None,
        tau: float = 1.0,
        norm_first: bool = False,
        qk_scale: Optional[float] = None,
        features_only: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        rel_pos_embed: bool = False,
        rel_pos: str = "auto",
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        if any(s % patch_size or s < patch_size for s in self.img_size):
            raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}; "
                             f"use e.g. img_size={max(1, self.img_size[0] // patch_size) * patch_size}")
        check_attention_args(embed_dim, num_heads, attn, attn_act, attn_norm, tau, rel_pos)
        self.patch_size = patch_size
        self.grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_tokens = self.grid[0] * self.grid[1] + 1
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, depth, "blocks")
        self.attn_kind = attn
        self.rel_pos_embed = bool(rel_pos_embed)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = Parameter(init.initializer(init.TruncatedNormal(0.02), (1, 1, embed_dim), ms.float32),
                                   name="cls_token")
        self.pos_embed = Parameter(init.initializer(init.TruncatedNormal(0.02), (1, self.num_tokens, embed_dim),
                                                    ms.float32), name="pos_embed")
        self.pos_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        dpr = np.linspace(0, drop_path_rate, depth).tolist()
        attn_kwargs = dict(attn=attn, attn_act=attn_act, attn_norm=attn_norm, tau=tau, norm_first=norm_first,
                           qk_scale=qk_scale, rel_pos=rel_pos, rel_pos_grid=self.grid if rel_pos_embed else None)
        self.blocks = nn.CellList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], **attn_kwargs)
            for i in range(depth)
        ])
        self.norm = layer_norm(embed_dim, 1e-6)
        self.feature_info = [{"num_chs": embed_dim, "reduction": patch_size, "module": f"blocks.{i}"}
                             for i in range(depth)]
        if not features_only and num_classes > 0:
            self.head = nn.Dense(embed_dim, num_classes)
        else:
            self.head = nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Dense):
                cell.weight.set_data(init.initializer(init.TruncatedNormal(0.02), cell.weight.shape, cell.weight.dtype))
                if cell.bias is not None:
                    cell.bias.set_data(init.initializer(init.Zero(), cell.bias.shape, cell.bias.dtype))

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError unless ``h x w`` is the image size the model was built for (one learned position
        embedding per patch); the exporter calls this before writing anything."""
        if h != self.img_size[0] or w != self.img_size[1]:
            raise ValueError(
                f"VisionTransformer was built for img_size={self.img_size} ({self.num_tokens} position embeddings), "
                f"got an input of {h}x{w}; resize the input or build with "
                f"img_size=({h}, {w}) (a multiple of patch_size={self.patch_size})")

    def _check_input(self, x):
        x = check_nchw(x, self.in_chans, "VisionTransformer")
        self.check_input_size(x.shape[2], x.shape[3])
        return x

    def _embed(self, x):
        x = self.patch_embed(self._check_input(x))
        cls = ops.broadcast_to(self.cls_token, (x.shape[0], 1, self.embed_dim))
        x = ops.concat((cls, x), 1) + self.pos_embed
        return self.pos_drop(x)

    def forward_features(self, x):
        x = self._embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_head(self, x):
        return self.head(x[:, 0])

    def forward_maps(self, x):
        """Token maps (B, C, H/p, W/p) after the blocks in ``out_indices`` (class token dropped)."""
        x = self._embed(x)
        outs = ()
        i = 0
        for blk in self.blocks:
            x = blk(x)
            if i in self.out_indices:
                t = x[:, 1:].transpose(0, 2, 1)
                outs = outs + (t.reshape(t.shape[0], self.embed_dim, self.grid[0], self.grid[1]),)
            i += 1
        return outs

    def construct(self, x):
        if self.features_only:
            return self.forward_maps(x)
        return self.forward_head(self.forward_features(x))


# DeiT's training default (main.py --drop-path 0.1) for Ti and S
_DEIT = dict(patch_size=16, depth=12, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.1)
_TI = dict(embed_dim=192, num_heads=3, **_DEIT)
_S = dict(embed_dim=384, num_heads=6, **_DEIT)
VARIANTS = {
    "deit_tiny": _TI,   # DeiT-Ti/16 at 224: 5.72 M params, softmax attention
    "deit_small": _S,   # DeiT-S/16 at 224: 22.05 M params
    # ReLU attention (normalisation: divide by the token count N) and a relative position embedding
    # (rel_pos_embed=False: without it, the first version)
    "deit_tiny_relu": dict(_TI, attn_act="relu", rel_pos_embed=True),
    "deit_small_relu": dict(_S, attn_act="relu", rel_pos_embed=True),
    # depth-wise self-attention (no value bank: 5.27 M / 20.28 M params)
    "deit_tiny_dw": dict(_TI, attn="depthwise"),
    "deit_small_dw": dict(_S, attn="depthwise"),
}

register_variants(__name__, VisionTransformer, VARIANTS, default_cfgs)
