"""MindSpore Swin Transformer and ACmix-Swin.

Refer to "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (Liu et al., ICCV 2021;
microsoft/Swin-Transformer ``models/swin_transformer.py``) and "On the Integration of Self-Attention and
Convolution" (Pan et al., CVPR 2022; LeapLabTHU/ACmix @ 81dddb6 ``Swin-Transformer/models/swin_transformer_acmix.py``),
in which only the window attention changes (:class:`~convattn.layers.window_attention.WindowAttentionACmix`).

Cell names equal the official modules (``patch_embed.proj/norm, layers.{i}.blocks.{j}.{norm1,attn,norm2,mlp},
layers.{i}.downsample.{reduction,norm}, norm, head``); the buffers ``relative_position_index`` and ``attn_mask``
are recomputed here and dropped on conversion (``convert_rules='acmix_swin'``), so official checkpoints
(``{'model': state_dict, ...}`` from the Swin trainer) convert with ``python -m convattn.convert``.

Like upstream, a model is built for one ``img_size``: each stage whose map is not larger than the window uses
one window of the map size and no shift. A size whose stage maps a window does not tile (or that PatchMerging
cannot halve) is rejected at construction, naming a size that works.

Parameter counts (1000 classes): Swin-T 28.29 M, Swin-S 49.61 M; ACmix-Swin-T 28.65 M, ACmix-Swin-S 50.35 M,
exactly the official ``SwinTransformer_acmix``. The ACmix README prints 30 M / 51 M; the official code itself
counts 28.65 M / 50.35 M (its ``__main__`` prints trainable parameters), so the README figures are rounded up
(Swin-T by 4.7 %, Swin-S by 1.3 %); we match the code, which also loads the released checkpoints.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from mindspore import Tensor, nn, ops

from ..layers import DropPath, Mlp, PatchEmbed, dense, check_nchw, layer_norm, to_2tuple, trunc_normal, trunc_normal_dense
from ..layers.dynamic_attention import build_attention_core, check_attention_args
from ..layers.window_attention import (TokenPermutation, WindowAttention, WindowAttentionACmix, cyclic_shift,
                                       shifted_window_mask, window_token_order)
from .base import StagedClassifier
from .builder import check_out_indices, register_variants
from .registry import model_cfg, official_weights

__all__ = ["SwinTransformer", "SwinTransformerBlock", "BasicLayer", "PatchMerging"]

_SWIN_PAPER = "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (arXiv 2103.14030)"
_ACMIX_PAPER = "On the Integration of Self-Attention and Convolution (arXiv 2111.14556, CVPR 2022)"


def _cfg(top1=None, acmix=False, **kwargs):
    return model_cfg(
        crop_pct=0.875, interpolation="bicubic", first_conv="patch_embed.proj", classifier="head",
        paper=_ACMIX_PAPER if acmix else _SWIN_PAPER,
        upstream=("LeapLabTHU/ACmix@81dddb6 Swin-Transformer/models/swin_transformer_acmix.py" if acmix
                  else "microsoft/Swin-Transformer models/swin_transformer.py"),
        convert_rules="acmix_swin", top1=top1,
        small_kwargs={"img_size": 64, "embed_dim": 16, "depths": (2, 2, 1, 1), "num_heads": (1, 2, 2, 4),
                     "window_size": 4},
        small_input_size=(3, 64, 64), **kwargs,
    )


def _swin_weights(file, top1):
    return official_weights(
        file, (f"https://github.com/SwinTransformer/storage/releases/download/v1.0.0/{file}",), top1=top1,
        container="Swin trainer: {'model': state_dict} (relative_position_index, attn_mask buffers: recomputed here)",
        licence="MIT (microsoft/Swin-Transformer); trained on ImageNet-1k")


def _acmix_swin_weights(file, tsinghua, top1):
    # Tsinghua cloud's '?dl=1' link is a direct download; the host publishes no file name, so the name is convattn's
    # (the config name of the ACmix repository). Google Drive copies: links in the ACmix README (manual).
    return official_weights(
        file, (f"https://cloud.tsinghua.edu.cn/f/{tsinghua}/?dl=1",), top1=top1,
        container="Swin trainer: {'model', 'optimizer', 'lr_scheduler', 'config', ...}",
        licence="no licence file in LeapLabTHU/ACmix (its Swin code is microsoft/Swin-Transformer's, MIT); "
                "trained on ImageNet-1k",
        note="the file name is convattn's: the host publishes none")


default_cfgs = {
    "swin_tiny": _cfg(top1=81.3, weights=_swin_weights("swin_tiny_patch4_window7_224.pth", 81.2)),
    "swin_small": _cfg(top1=83.0, weights=_swin_weights("swin_small_patch4_window7_224.pth", 83.2)),
    "acmix_swin_tiny": _cfg(top1=81.9, acmix=True, weights=_acmix_swin_weights(
        "acmix_swin_tiny_patch4_window7_224.pth", "210c89a6f9eb4bd0beb6", 81.9)),
    "acmix_swin_small": _cfg(top1=83.5, acmix=True, weights=_acmix_swin_weights(
        "acmix_swin_small_patch4_window7_224.pth", "8bed555e75c840f8a00d", 83.5)),
}


class SwinTransformerBlock(nn.Cell):
    """LN -> (shifted) window attention -> residual, LN -> MLP -> residual, on tokens ``(B, H*W, C)``.

    ``acmix=True`` uses the ACmix window attention; its conv path runs on the cyclically shifted map, as upstream.
    """

    def __init__(self, dim: int, input_resolution: Tuple[int, int], num_heads: int, window_size: int = 7,
                 shift_size: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, acmix: bool = False,
                 depthwise_conv: Optional[bool] = None, attn_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        h, w = self.input_resolution
        if min(h, w) <= window_size:  # upstream: one window over the whole map, no shift
            shift_size = 0
            window_size = min(h, w)
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        if h % window_size or w % window_size:
            raise ValueError(f"a {h}x{w} map is not tiled by {window_size}x{window_size} windows; choose an image "
                             f"size whose stage maps are multiples of the window size")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = layer_norm(dim)
        if acmix:
            self.attn = WindowAttentionACmix(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop,
                                             depthwise_conv=depthwise_conv)
        else:
            core = (build_attention_core(dim, num_heads, scale=qk_scale, attn_drop=attn_drop, **attn_cfg)
                    if attn_cfg else None)  # attn_cfg: the dynamic-convolution attention options (SwinTransformer)
            self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop, core=core)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, weight_init="zeros")  # trunc-normal: _init_weights
        self.attn_mask = Tensor(shifted_window_mask(h, w, window_size, shift_size)) if shift_size > 0 else None
        # plain window attention: shift + window partition (and back) as one token gather each way; the ACmix
        # form keeps the map, which its convolution path needs
        self.windowed = not acmix
        if self.windowed:
            order = window_token_order(h, w, window_size, shift_size)
            self.to_windows = TokenPermutation(order)
            self.from_windows = TokenPermutation(np.argsort(order))

    def construct(self, x):
        h, w = self.input_resolution
        b, n, c = x.shape
        shortcut = x
        if self.windowed:
            x = self.to_windows(self.norm1(x)).reshape(-1, self.window_size * self.window_size, c)
            x = self.from_windows(self.attn(x, self.attn_mask).reshape(b, n, c))
            x = shortcut + self.drop_path(x)
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = self.norm1(x).reshape(b, h, w, c)
        s = self.shift_size
        if s > 0:
            x = cyclic_shift(x, -s, -s)
        x = self.attn(x, self.attn_mask)
        if s > 0:
            x = cyclic_shift(x, s, s)
        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Cell):
    """2x2 neighbourhood concat (order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]) -> LN -> Linear 4C->2C."""

    def __init__(self, input_resolution: Tuple[int, int], dim: int) -> None:
        super().__init__()
        h, w = input_resolution
        if h % 2 or w % 2:
            raise ValueError(f"PatchMerging needs an even map, got {h}x{w}")
        self.input_resolution = tuple(input_resolution)
        self.reduction = dense(4 * dim, 2 * dim, has_bias=False, weight_init="zeros")
        self.norm = layer_norm(4 * dim)

    def construct(self, x):
        h, w = self.input_resolution
        b, _, c = x.shape
        # (b, h/2, hp, w/2, wp, c) -> (b, h/2, w/2, wp, hp, c): channel blocks in the official order
        # x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]; a reshape, since CPU StridedSliceGrad fails.
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class BasicLayer(nn.Cell):
    """One stage: ``depth`` blocks alternating shift 0 / window // 2, then optional PatchMerging."""

    def __init__(self, dim: int, input_resolution: Tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path=0.0, downsample: bool = False, acmix: bool = False,
                 depthwise_conv: Optional[bool] = None, attn_cfg: Optional[dict] = None) -> None:
        super().__init__()
        rates = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.blocks = nn.CellList([
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size,
                                 0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias, qk_scale, drop,
                                 attn_drop, rates[i], acmix, depthwise_conv, attn_cfg)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim) if downsample else None
        self.has_downsample = downsample

    def forward_blocks(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x

    def construct(self, x):
        x = self.forward_blocks(x)
        if self.has_downsample:
            x = self.downsample(x)
        return x


def _check_sizes(img_size, patch_size: int, window_size: int, num_stages: int) -> None:
    h, w = to_2tuple(img_size)
    unit = patch_size * 2 ** (num_stages - 1) * window_size
    suggest = tuple(max(unit, int(round(s / unit)) * unit) for s in (h, w))
    for i in range(num_stages):
        rh, rw = h // patch_size // 2 ** i, w // patch_size // 2 ** i
        ws = min(rh, rw) if min(rh, rw) <= window_size else window_size
        bad = (h % patch_size or w % patch_size or rh == 0 or rw == 0 or rh % ws or rw % ws
               or (i < num_stages - 1 and (rh % 2 or rw % 2)))
        if bad:
            raise ValueError(
                f"img_size={h}x{w} with patch_size={patch_size}, window_size={window_size} and {num_stages} stages "
                f"gives a stage-{i} map of {rh}x{rw} that {ws}x{ws} windows do not tile (or PatchMerging cannot "
                f"halve); use img_size={suggest[0] if suggest[0] == suggest[1] else suggest} "
                f"(a multiple of patch * 2**(stages-1) * window = {unit})")


class SwinTransformer(StagedClassifier, nn.Cell):
    """Swin Transformer (``acmix=False``) or ACmix-Swin (``acmix=True``).

    Args:
        img_size: input size the model is built for (int or (H, W)).
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale: as upstream.
        drop_rate, attn_drop_rate, drop_path_rate: dropout / stochastic depth (linear over all blocks).
        patch_norm: LayerNorm after the patch embedding. ape (absolute position embedding) is not supported.
        acmix: use the ACmix window attention. depthwise_conv: its conv-path formulation (None: auto, Ascend).
        features_only / out_indices: return the stage maps (NCHW, before PatchMerging; strides 4..32).
        attn, attn_act, attn_norm, tau, norm_first, rel_pos: the dynamic-convolution attention options of
            :mod:`convattn.layers.dynamic_attention` (arXiv 2309.10713), e.g. ``attn_act='relu'`` or
            ``attn='depthwise'`` (the window's key kernels averaged into one per query, restricted to its
            shifted-window region). The defaults are Swin's own softmax attention.
    """

    recompute_unit = (SwinTransformerBlock,)  # set_recompute marks each of these

    def __init__(self, img_size=224, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 patch_norm: bool = True, acmix: bool = False, depthwise_conv: Optional[bool] = None,
                 features_only: bool = False, out_indices: Optional[Sequence[int]] = None,
                 attn: str = "standard", attn_act: Optional[str] = None, attn_norm: Optional[str] = None,
                 tau: float = 1.0, norm_first: bool = False, rel_pos: str = "auto") -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths and num_heads need one entry per stage, got {len(depths)} and {len(num_heads)}")
        self.num_layers = len(depths)
        for i, heads in enumerate(num_heads):
            d = embed_dim * 2 ** i
            if heads < 1 or d % heads:
                raise ValueError(f"stage {i} has {d} channels, not divisible by num_heads[{i}]={heads}")
        _check_sizes(img_size, patch_size, window_size, self.num_layers)
        check_attention_args(embed_dim * 2 ** (len(depths) - 1), num_heads[-1], attn, attn_act, attn_norm, tau, rel_pos)
        attn_cfg = None
        if not (attn == "standard" and attn_act in (None, "softmax") and attn_norm is None and tau == 1.0
                and rel_pos in ("auto", "logits")):
            if acmix:
                raise ValueError("the ACmix window attention takes no attn/attn_act/attn_norm/tau options; "
                                 "use acmix=False (swin_*) for the dynamic-convolution attention variants")
            attn_cfg = dict(attn=attn, attn_act=attn_act, attn_norm=attn_norm, tau=tau, norm_first=norm_first,
                            rel_pos=rel_pos)
        self.num_classes = num_classes
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, self.num_layers)
        self.num_features = int(embed_dim * 2 ** (self.num_layers - 1))
        self.img_size = to_2tuple(img_size)
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_eps=1e-5 if patch_norm else None)
        res = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.pos_drop = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        layers = []
        self.feature_info = []
        self.stage_res = []
        for i in range(self.num_layers):
            r = (res[0] // 2 ** i, res[1] // 2 ** i)
            layers.append(BasicLayer(int(embed_dim * 2 ** i), r, depths[i], num_heads[i], window_size, mlp_ratio,
                                     qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                                     dpr[sum(depths[:i]):sum(depths[:i + 1])], i < self.num_layers - 1, acmix,
                                     depthwise_conv, attn_cfg))
            self.stage_res.append(r)
            self.feature_info.append({"num_chs": int(embed_dim * 2 ** i), "reduction": patch_size * 2 ** i,
                                      "module": f"layers.{i}"})
        self.layers = nn.CellList(layers)
        self.norm = layer_norm(self.num_features)
        if not features_only and num_classes > 0:
            self.head = nn.Dense(self.num_features, num_classes)
        else:
            self.head = nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # upstream: trunc_normal_(std=0.02) Linear weights and bias tables, zero Linear bias, LayerNorm 1/0; convs
        # keep their defaults (the ACmix dep_conv its shift kernels)
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Dense):
                trunc_normal_dense(cell)
            elif isinstance(cell, WindowAttention):
                t = cell.relative_position_bias_table
                t.set_data(Tensor(trunc_normal(t.shape), t.dtype))

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError unless ``h x w`` is the image size the model was built for (windows, relative
        position tables and attention masks are fixed at construction); the exporter calls this before writing
        anything."""
        if h != self.img_size[0] or w != self.img_size[1]:
            raise ValueError(f"Swin was built for {self.img_size[0]}x{self.img_size[1]} images, got "
                             f"{h}x{w}; resize the input or build the model with img_size={(h, w)}")

    def _embed(self, x):
        x = check_nchw(x, self.in_chans, "Swin")
        self.check_input_size(x.shape[2], x.shape[3])
        return self.pos_drop(self.patch_embed(x))

    def forward_stages(self, x) -> Tuple:
        x = self._embed(x)
        outs = ()
        for i, layer in enumerate(self.layers):
            x = layer.forward_blocks(x)
            b, _, c = x.shape
            h, w = self.stage_res[i]
            outs = outs + (ops.transpose(x.reshape(b, h, w, c), (0, 3, 1, 2)),)
            if layer.has_downsample:
                x = layer.downsample(x)
        return outs, x

    def forward_features(self, x):
        x = self._embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)  # (B, L, C)

    def forward_head(self, x):
        return self.head(ops.mean(x, axis=1))

    def feature_maps(self, x):
        feats, _ = self.forward_stages(x)
        return feats


_TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.2)
_SMALL = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.3)
VARIANTS = {
    "swin_tiny": _TINY,                            # 28.29 M params
    "swin_small": _SMALL,                          # 49.61 M
    "acmix_swin_tiny": dict(_TINY, acmix=True),    # 28.65 M (official code; README 30 M)
    "acmix_swin_small": dict(_SMALL, acmix=True),  # 50.35 M (official code; README 51 M)
}

register_variants(__name__, SwinTransformer, VARIANTS, default_cfgs)
