"""MindSpore PVT v1 (Pyramid Vision Transformer) and ACmix-PVT.

Refer to "Pyramid Vision Transformer: A Versatile Backbone for Dense Prediction without Convolutions" (Wang et al.,
ICCV 2021; whai362/PVT ``classification/pvt.py``) and "On the Integration of Self-Attention and Convolution"
(Pan et al., CVPR 2022). Cell and parameter names equal the official PVT (``patch_embed{i}.proj/norm``,
``pos_embed{i}``, ``block{i}.{j}.attn.{q,kv,sr,norm,proj}``, ``norm``, ``cls_token``, ``head``), so PVT checkpoints
convert by the generic renames. Kept from upstream: patch-embedding LayerNorm eps 1e-5 (PyTorch default) but block /
final LayerNorm eps 1e-6; the spatial-reduction LayerNorm eps 1e-5; the class token joins only in the last stage.
A model is built for one ``img_size`` (upstream interpolates ``pos_embed`` for other sizes; here another size is
rejected with the size to use).

ACmix-PVT was never released (the ACmix README lists PVT-T/S results, weights "in process", no code). Design, each
choice following the ACmix paper and its released Swin form as closely as PVT allows:

1. ACmix replaces the spatial-reduction attention (SRA) of every block; the MLP, norms, patch embeddings, position
   embeddings and class token are PVT's.
2. Stage I (shared 1x1 projections): PVT's ``q`` and ``kv`` Linears are the shared projections, each computed ONCE
   and used by both paths (the ACmix paper's point: stage I, the 1x1 projections, is the shared bulk of the
   cost). The attention path is PVT's SRA unchanged (q from all tokens, k/v from ``kv(norm(sr(x)))``).
   ``acmix_kv='shared'`` (default): the convolution path reads the same q (full grid) and the same k/v, which
   SRA computes once per sr x sr patch; each k/v token is repeated over the patch it summarises (nearest
   upsampling, no multiply-adds; at sr = 1 they are the full-grid k/v). The path adds only ``fc`` + ``dep_conv``:
   ACmix-PVT-T/S count 2.02 / 3.97 GMACs (attention products included), +0.08 / +0.16 G over PVT-T/S
   (1.93 / 3.82; PVT's paper: 1.9 / 3.8), against the ACmix README's 2.0 / 3.9 G. PVT-S's remaining 2 % is the
   conv path itself (fc + dep_conv, 0.16 G at its depths): no reading that keeps that path reaches 3.9.
   ``acmix_kv='full'`` (the first version): the conv path applies ``kv`` again to the full-resolution tokens
   (2.25 / 4.47 GMACs).
3. Stage II, convolution path = the Swin form's: ``fc`` (1x1 over the 3*heads axis, k_conv^2 = 9 outputs,
   **with bias**), reorder to ``(B, 9*head_dim, H, W)``, ``dep_conv`` (3x3, groups = head_dim, no bias, shift
   initialised); the same reshape order as upstream, and the depth-wise (Ascend) form via ``depthwise_conv``.
4. Merge as in the Swin form: ``rate1 * proj(attention) + rate2 * conv`` (the conv path bypasses ``proj``),
   ``rate1 = rate2 = 0.5``, then ``proj_drop``.
5. Last stage: the class token has no spatial position, so it receives only ``rate1 * proj(attention)``; the conv path
   runs on the 7x7 patch tokens.
6. Everything else (depths, widths, heads, mlp ratios, sr ratios 8/4/2/1, drop path 0.1) is PVT-T/S.

Parameter counts (1000 classes): PVT-T 13.23 M, PVT-S 24.49 M (upstream); ACmix-PVT-T 13.40 M, ACmix-PVT-S 24.83 M.
The ACmix README prints 13 M / 25 M: ACmix-PVT-S is within 0.7 %; ACmix-PVT-T is 3 % above the rounded "13 M"
because the PVT-T baseline itself has 13.2 M and any ACmix conv path adds >= 81*C weights per block (+0.17 M).
"""
from typing import Optional, Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import DropPath, Mlp, SoftmaxAttention, conv2d, dense, PatchEmbed, check_nchw, layer_norm, to_2tuple, trunc_normal, trunc_normal_dense
from ..layers.acmix import ConvPathMixin
from .base import StagedClassifier
from .builder import check_out_indices, register_variants
from .registry import model_cfg, official_weights, unreleased_weights

__all__ = ["PyramidVisionTransformer", "Attention", "AttentionACmix", "Block"]

_PVT_PAPER = "Pyramid Vision Transformer (arXiv 2102.12122, ICCV 2021)"
_ACMIX_PAPER = "On the Integration of Self-Attention and Convolution (arXiv 2111.14556, CVPR 2022)"


def _cfg(top1=None, acmix=False, **kwargs):
    return model_cfg(
        crop_pct=0.875, interpolation="bicubic", first_conv="patch_embed1.proj", classifier="head",
        paper=_ACMIX_PAPER if acmix else _PVT_PAPER,
        upstream=("not released by LeapLabTHU/ACmix; designed from the paper on whai362/PVT (see module docstring)"
                  if acmix else "whai362/PVT classification/pvt.py"),
        convert_rules="acmix", top1=top1, small_kwargs={"img_size": 64, "depths": (1, 1, 1, 1)},
        small_input_size=(3, 64, 64), **kwargs,
    )


def _weights(file, top1):
    # GitHub release (Google Drive copies: links in the PVT classification README, manual)
    return official_weights(
        file, (f"https://github.com/whai362/PVT/releases/download/v2/{file}",), top1=top1,
        container="plain state_dict (inferred; a {'model': ...} wrapper reads the same)",
        licence="Apache-2.0 (whai362/PVT); trained on ImageNet-1k")


_ACMIX_NONE = unreleased_weights("LeapLabTHU/ACmix lists ACmix-PVT weights as 'In process': never released")

default_cfgs = {
    "pvt_tiny": _cfg(top1=75.1, weights=_weights("pvt_tiny.pth", 75.1)),
    "pvt_small": _cfg(top1=79.8, weights=_weights("pvt_small.pth", 79.8)),
    "acmix_pvt_tiny": _cfg(top1=78.0, acmix=True, weights=_ACMIX_NONE),
    "acmix_pvt_small": _cfg(top1=81.7, acmix=True, weights=_ACMIX_NONE),
}


class Attention(nn.Cell):
    """PVT spatial-reduction attention: q from every token, k/v from ``LN(conv_sr(x))`` (sr x sr, stride sr)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, sr_ratio: int = 1, resolution=(14, 14),
                 n_cls: int = 0) -> None:
        super().__init__()
        self.h, self.w = resolution  # the stage's token grid (static), and the leading non-spatial tokens
        self.n_cls = n_cls
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.q = dense(dim, dim, has_bias=qkv_bias, weight_init="zeros")
        self.kv = dense(dim, dim * 2, has_bias=qkv_bias, weight_init="zeros")
        self.attention_core = SoftmaxAttention(num_heads, self.head_dim, self.scale, attn_drop)
        self.proj = dense(dim, dim, weight_init="zeros")
        self.proj_drop = nn.Dropout(p=proj_drop) if proj_drop > 0 else nn.Identity()
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = conv2d(dim, dim, sr_ratio, stride=sr_ratio, pad_mode="valid", has_bias=True)
            self.norm = layer_norm(dim, 1e-5)

    def project(self, x):
        """Stage I: ``(q (B, N, C), kv (B, M, 2C))``, k/v from the spatially reduced tokens (M = N / sr^2)."""
        b, n, c = x.shape
        if self.sr_ratio > 1:
            x_ = ops.transpose(x, (0, 2, 1)).reshape(b, c, self.h, self.w)
            x_ = ops.transpose(self.sr(x_).reshape(b, c, -1), (0, 2, 1))
            x_ = self.norm(x_)
        else:
            x_ = x
        return self.q(x), self.kv(x_)

    def attend(self, q_t, kv_t):
        """Stage II, attention: softmax(q k^T * scale) v over all heads, then ``proj``."""
        return self.proj(self.attention_core(q_t, kv_t))

    def attention(self, x):
        """SRA + ``proj`` on tokens ``(B, N, C)``."""
        q_t, kv_t = self.project(x)
        return self.attend(q_t, kv_t)

    def construct(self, x):
        return self.proj_drop(self.attention(x))


class AttentionACmix(ConvPathMixin, Attention):
    """ACmix on PVT's SRA (design in the module docstring): ``rate1 * proj(SRA) + rate2 * conv_path(q, k, v)``.

    ``acmix_kv``: ``'shared'`` (default: the conv path reuses SRA's k/v, repeated over each sr x sr patch) or
    ``'full'`` (``kv`` applied again to the full-resolution tokens for the conv path).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, sr_ratio: int = 1, resolution=(14, 14),
                 n_cls: int = 0, depthwise_conv: Optional[bool] = None, acmix_kv: str = "shared") -> None:
        if acmix_kv not in ("shared", "full"):
            raise ValueError(f"acmix_kv must be 'shared' (the conv path reuses SRA's k/v) or 'full' (kv recomputed "
                             f"on the full-resolution tokens), got {acmix_kv!r}")
        if acmix_kv == "shared" and (resolution[0] % sr_ratio or resolution[1] % sr_ratio):
            raise ValueError(f"acmix_kv='shared' repeats each k/v token over its {sr_ratio}x{sr_ratio} patch, so the "
                             f"{resolution[0]}x{resolution[1]} token grid must be a multiple of sr_ratio={sr_ratio}; "
                             f"use an img_size whose stage grids divide by the sr ratios, or acmix_kv='full'")
        Attention.__init__(self, dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop, sr_ratio, resolution, n_cls)
        self.acmix_kv = acmix_kv
        self.init_conv_path(num_heads, dim // num_heads, dim, 3, 1, fc_bias=True, depthwise_conv=depthwise_conv)
        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")

    def construct(self, x):
        b, n, c = x.shape
        nh, hd, h, w, n_cls = self.num_heads, self.head_dim, self.h, self.w, self.n_cls
        q_t, kv_t = self.project(x)                        # stage I, once for both paths
        qs = q_t[:, n_cls:] if n_cls > 0 else q_t
        r = self.sr_ratio
        if self.acmix_kv == "full":
            kvs = self.kv(x[:, n_cls:] if n_cls > 0 else x)
        elif r > 1:                                        # each reduced k/v token over its r x r patch
            kvs = kv_t.reshape(b, h // r, 1, w // r, 1, 2 * c)
            kvs = ops.broadcast_to(kvs, (b, h // r, r, w // r, r, 2 * c)).reshape(b, h * w, 2 * c)
        else:
            kvs = kv_t[:, n_cls:] if n_cls > 0 else kv_t
        qkv = ops.concat((qs, kvs), -1)  # (B, HW, 3C): q heads, k heads, v heads
        f_all = ops.transpose(qkv.reshape(b, h * w, 3 * nh, hd), (0, 2, 3, 1))
        conv = ops.transpose(self.conv_path(f_all, h, w).reshape(b, c, h * w), (0, 2, 1))
        if n_cls > 0:
            conv = ops.concat((ops.zeros((b, n_cls, c), conv.dtype), conv), 1)
        out = self.rate1 * self.attend(q_t, kv_t) + self.rate2 * conv
        return self.proj_drop(out)


class Block(nn.Cell):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 qk_scale: Optional[float] = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 sr_ratio: int = 1, acmix: bool = False, depthwise_conv: Optional[bool] = None, resolution=(14, 14),
                 n_cls: int = 0, acmix_kv: str = "shared") -> None:
        super().__init__()
        self.norm1 = layer_norm(dim, 1e-6)
        if acmix:
            self.attn = AttentionACmix(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio, resolution, n_cls,
                                       depthwise_conv, acmix_kv)
        else:
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, sr_ratio, resolution, n_cls)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm(dim, 1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, weight_init="zeros")  # trunc-normal: set by the network

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PyramidVisionTransformer(StagedClassifier, nn.Cell):
    """PVT v1 (``acmix=False``) or ACmix-PVT (``acmix=True``).

    Args:
        img_size: input size the model is built for; patch_size: first-stage patch (later stages: 2).
        embed_dims, num_heads, mlp_ratios, depths, sr_ratios: per stage. qkv_bias, qk_scale: attention options.
        drop_rate, attn_drop_rate, drop_path_rate: dropout / stochastic depth (linear over all blocks).
        acmix / depthwise_conv: ACmix attention and its conv-path formulation (None: depth-wise on Ascend).
        acmix_kv: where the ACmix conv path gets k/v: ``'shared'`` (default, SRA's own k/v repeated over each
            sr x sr patch) or ``'full'`` (``kv`` re-applied at full resolution); see the module docstring.
        features_only / out_indices: return the stage maps of stages 1-3 and the last stage's patch tokens (NCHW).
    """

    recompute_unit = (Block,)  # set_recompute marks each of these

    def __init__(self, img_size=224, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 embed_dims: Sequence[int] = (64, 128, 320, 512), num_heads: Sequence[int] = (1, 2, 5, 8),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 depths: Sequence[int] = (2, 2, 2, 2), sr_ratios: Sequence[int] = (8, 4, 2, 1), acmix: bool = False,
                 depthwise_conv: Optional[bool] = None, features_only: bool = False,
                 out_indices: Optional[Sequence[int]] = None, acmix_kv: str = "shared") -> None:
        super().__init__()
        n = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(mlp_ratios) == len(sr_ratios) == n):
            raise ValueError("embed_dims, num_heads, mlp_ratios, depths and sr_ratios need one entry per stage")
        h, w = to_2tuple(img_size)
        unit = patch_size * 2 ** (n - 1)
        res = []
        for i in range(n):
            rh, rw = h // patch_size // 2 ** i, w // patch_size // 2 ** i
            if h % unit or w % unit or rh % sr_ratios[i] or rw % sr_ratios[i]:
                need = unit * max(sr_ratios[i] for i in range(n))
                raise ValueError(f"img_size={h}x{w}: stage {i} map {rh}x{rw} must be whole and divisible by "
                                 f"sr_ratio={sr_ratios[i]}; use an img_size that is a multiple of {need} (e.g. 224)")
            res.append((rh, rw))
        for i in range(n):
            if num_heads[i] < 1 or embed_dims[i] % num_heads[i]:
                raise ValueError(f"stage {i}: embed_dims[{i}]={embed_dims[i]} not divisible by num_heads[{i}]={num_heads[i]}")
        self.img_size = (h, w)
        self.in_chans = in_chans
        self.num_stages = n
        self.num_classes = num_classes
        self.stage_res = res
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, n)
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        self.feature_info = []
        for i in range(n):
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(patch_size if i == 0 else 2,
                                                            in_chans if i == 0 else embed_dims[i - 1], embed_dims[i],
                                                            norm_eps=1e-5))
            tokens = res[i][0] * res[i][1] + (1 if i == n - 1 else 0)
            setattr(self, f"pos_embed{i + 1}", Parameter(Tensor(trunc_normal((1, tokens, embed_dims[i]))),
                                                         name=f"pos_embed{i + 1}"))
            setattr(self, f"block{i + 1}", nn.CellList([
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                      dpr[cur + j], sr_ratios[i], acmix, depthwise_conv, res[i], 1 if i == n - 1 else 0, acmix_kv)
                for j in range(depths[i])]))
            cur += depths[i]
            self.feature_info.append({"num_chs": embed_dims[i], "reduction": patch_size * 2 ** i,
                                      "module": f"block{i + 1}"})
        self.pos_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.norm = layer_norm(embed_dims[-1], 1e-6)
        self.cls_token = Parameter(Tensor(trunc_normal((1, 1, embed_dims[-1]))), name="cls_token")
        self.num_features = embed_dims[-1]
        self.head = nn.Dense(embed_dims[-1], num_classes) if (num_classes > 0 and not features_only) else nn.Identity()
        self.stages = [(getattr(self, f"patch_embed{i + 1}"), getattr(self, f"pos_embed{i + 1}"),
                        getattr(self, f"block{i + 1}")) for i in range(n)]
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Dense):
                trunc_normal_dense(cell)

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError unless ``h x w`` is the image size the model was built for (position embeddings
        and spatial-reduction maps are fixed at construction); the exporter calls this before writing anything."""
        if h != self.img_size[0] or w != self.img_size[1]:
            raise ValueError(f"PVT was built for {self.img_size[0]}x{self.img_size[1]} images, got "
                             f"{h}x{w}; resize the input or build with img_size={(h, w)}")

    def forward_stages(self, x):
        x = check_nchw(x, self.in_chans, "PVT")
        self.check_input_size(x.shape[2], x.shape[3])
        b = x.shape[0]
        feats = ()
        last = self.num_stages - 1
        for i, (embed, pos, blocks) in enumerate(self.stages):
            h, w = self.stage_res[i]
            x = embed(x)
            if i == last:
                x = ops.concat((ops.broadcast_to(self.cls_token, (b, 1, x.shape[2])), x), 1)
            x = self.pos_drop(x + pos)
            for blk in blocks:
                x = blk(x)
            c = x.shape[2]
            if i != last:
                x = ops.transpose(x.reshape(b, h, w, c), (0, 3, 1, 2))
                feats = feats + (x,)
            else:
                feats = feats + (ops.transpose(x[:, 1:].reshape(b, h, w, c), (0, 3, 1, 2)),)
        return feats, x

    def forward_features(self, x):
        _, x = self.forward_stages(x)
        return self.norm(x)[:, 0]

    def forward_head(self, x):
        return self.head(x)

    def feature_maps(self, x):
        feats, _ = self.forward_stages(x)
        return feats


_PVT = dict(patch_size=4, embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
            qkv_bias=True, sr_ratios=(8, 4, 2, 1), drop_path_rate=0.1)
VARIANTS = {
    "pvt_tiny": dict(_PVT, depths=(2, 2, 2, 2)),                         # 13.23 M params
    "pvt_small": dict(_PVT, depths=(3, 4, 6, 3)),                        # 24.49 M
    # designed from the paper (upstream never released it): 13.40 M (README 13 M) / 24.83 M (README 25 M)
    "acmix_pvt_tiny": dict(_PVT, depths=(2, 2, 2, 2), acmix=True),
    "acmix_pvt_small": dict(_PVT, depths=(3, 4, 6, 3), acmix=True),
}

register_variants(__name__, PyramidVisionTransformer, VARIANTS, default_cfgs)
