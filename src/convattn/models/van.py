"""MindSpore implementation of VAN. Refer to Visual Attention Network (Guo et al., arXiv 2202.09741, CVMJ 2023).

Follows the official ``models/van.py`` (Visual-Attention-Network/VAN-Classification @ e19779b): BatchNorm
inside blocks and patch embeddings, LayerNorm (eps 1e-6) after every stage, layer scale 1e-2, the
inner residual of ``Attention``, exact GELU. Cell names equal the official module names, so official
checkpoints convert by the generic PyTorch -> MindSpore renames alone (``convert_rules='van'``).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from ..layers import (GELU, channel_layer_norm, DropPath, LKAAttention, batch_norm2d, check_nchw, conv2d,
                      conv_fan_out_normal, depthwise_conv)
from ..layers.reparam import fold_bn_into_conv
from .base import StagedClassifier
from .builder import check_out_indices, register_variants
from .registry import model_cfg, official_weights, unreleased_weights

__all__ = ["VAN"]

_PAPER = "Visual Attention Network (arXiv 2202.09741)"
_UPSTREAM = "Visual-Attention-Network/VAN-Classification@e19779b models/van.py"


def _cfg(top1=None, **kwargs):
    # VAN inherits timm's _cfg(): mean = std = 0.5, crop 0.9, bicubic.
    return model_cfg(
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.9, interpolation="bicubic",
        first_conv="patch_embed1.proj", classifier="head", paper=_PAPER, upstream=_UPSTREAM,
        convert_rules="van", top1=top1, small_kwargs={"depths": (1, 1, 1, 1)}, **kwargs,
    )


def _weights(file, tsinghua, top1, sha256=None, size=None, note=None):
    # Hugging Face (the authors' organisation) first, their Tsinghua-cloud copy after; Google Drive copies exist too
    # (links in the VAN README) but are not scriptable. The timm trainer's checkpoint: {'state_dict', 'optimizer',
    # 'args' (argparse.Namespace, read as an inert placeholder), 'epoch', ...}.
    repo = {"van_tiny": "VAN-Tiny", "van_small": "VAN-Small", "van_base": "VAN-Base", "van_large": "VAN-Large"}
    stem = "_".join(file.split("_")[:2])
    return official_weights(
        file, (f"https://huggingface.co/Visual-Attention-Network/{repo[stem]}-original/resolve/main/{file}",
               f"https://cloud.tsinghua.edu.cn/f/{tsinghua}/?dl=1"),
        top1=top1, sha256=sha256, size=size,
        container="timm train checkpoint: {'state_dict', 'optimizer', 'args', ...}",
        licence="Apache-2.0 (VAN-Classification README; for commercial use the authors ask to be contacted); "
                "trained on ImageNet-1k",
        hash_note=None if sha256 else "none published (the Hugging Face API lists one in siblings[].lfs.sha256; "
                                      "not recorded here)",
        note=note)


_NO_1K = unreleased_weights("VAN-Classification released ImageNet-1k weights for VAN-B0..B3 only (B4-B6: mmpretrain "
                            "conversions of other trainings, not the official files)")

default_cfgs = {
    "van_b0": _cfg(top1=75.4, weights=_weights(
        "van_tiny_754.pth.tar", "aada2242a16245d6a561", 75.4, size=49_627_991,
        sha256="058bda07d27a89f27bbec8f3e47e6bda5de4f51dc59d0fb1f3cb835acb9130d8",
        note="a user measured 72.03 % with this file (VAN-Classification issue 2): the hash proves the bytes, "
             "not the accuracy")),
    "van_b1": _cfg(top1=81.1, weights=_weights("van_small_811.pth.tar", "dd3eb73692f74a2499c9", 81.1)),
    "van_b2": _cfg(top1=82.8, weights=_weights(
        "van_base_828.pth.tar", "58e7acceaf334ecdba89", 82.8,
        sha256="3fbae1db35c4f1f96c4d66f1c8b13cac9194043171ff8a7e87fd21eb43a93725")),
    "van_b3": _cfg(top1=83.9, weights=_weights(
        "van_large_839.pth.tar", "0201745f6920482490a0", 83.9, size=538_342_473,
        sha256="47010a5f353820551108cbd10c2ad60670c6e8a9cf7869867ea682caca23a677")),
    "van_b4": _cfg(top1=84.1, weights=_NO_1K),  # mmpretrain's evaluation of the converted weights (84.13)
    "van_b5": _cfg(weights=_NO_1K),
    "van_b6": _cfg(weights=_NO_1K),
}


class Mlp(nn.Cell):
    """1x1 -> depth-wise 3x3 (``dwconv.dwconv``) -> GELU -> dropout -> 1x1 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = conv2d(dim, hidden, 1, has_bias=True)
        self.dwconv = DWConv(hidden)
        self.act = GELU()
        self.fc2 = conv2d(hidden, dim, 1, has_bias=True)
        self.drop = nn.Dropout(p=drop) if drop > 0 else nn.Identity()

    def construct(self, x):
        x = self.fc1(x)
        x = self.dwconv(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        return self.drop(x)


class DWConv(nn.Cell):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = depthwise_conv(dim, 3)

    def construct(self, x):
        return self.dwconv(x)


class Block(nn.Cell):
    """x + DropPath(ls1 * Attention(BN(x))), then x + DropPath(ls2 * Mlp(BN(x)))."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-2, kernel_size: int = 21, dilation: int = 3) -> None:
        super().__init__()
        self.norm1 = batch_norm2d(dim)
        self.attn = LKAAttention(dim, kernel_size, dilation)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = batch_norm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = Parameter(Tensor(np.full((dim,), layer_scale_init, np.float32)), name="layer_scale_1")
        self.layer_scale_2 = Parameter(Tensor(np.full((dim,), layer_scale_init, np.float32)), name="layer_scale_2")

    def construct(self, x):
        ls1 = self.layer_scale_1.reshape(1, -1, 1, 1)
        ls2 = self.layer_scale_2.reshape(1, -1, 1, 1)
        x = x + self.drop_path(ls1 * self.attn(self.norm1(x)))
        x = x + self.drop_path(ls2 * self.mlp(self.norm2(x)))
        return x


class OverlapPatchEmbed(nn.Cell):
    """Strided conv (k = patch, pad = patch // 2, bias) + BatchNorm."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = conv2d(in_chans, embed_dim, patch_size, stride=stride, pad_mode="pad",
                              padding=patch_size // 2, has_bias=True)
        self.norm = batch_norm2d(embed_dim)
        self.deployed = False

    def construct(self, x):
        return self.norm(self.proj(x))

    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm into the projection (inference only; called by the network-level ``switch_to_deploy``)."""
        if self.deployed:
            raise RuntimeError("OverlapPatchEmbed.switch_to_deploy() was already called: its BatchNorm is folded")
        fold_bn_into_conv(self, "proj", "norm")
        self.deployed = True


class VAN(StagedClassifier, nn.Cell):
    """Visual Attention Network: four stages of LKA blocks.

    Args:
        embed_dims, depths, mlp_ratios: per-stage widths, block counts, MLP ratios.
        num_classes: head size (0: no head, the pooled features are returned).
        in_chans: input channels.
        drop_rate: dropout inside the MLPs. drop_path_rate: stochastic depth, linear over all blocks.
        kernel_size, dilation: the LKA decomposition (official: 21, 3).
        features_only / out_indices: return the LayerNorm'ed stage maps (strides 4, 8, 16, 32) instead of logits.
    """

    recompute_unit = (Block,)  # set_recompute marks each of these

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (3, 4, 6, 3),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        kernel_size: int = 21,
        dilation: int = 3,
        layer_scale_init: float = 1e-2,
        features_only: bool = False,
        out_indices: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if not (len(embed_dims) == len(depths) == len(mlp_ratios)):
            raise ValueError(f"embed_dims, depths and mlp_ratios need one entry per stage, got "
                             f"{len(embed_dims)}, {len(depths)}, {len(mlp_ratios)}")
        self.num_stages = len(depths)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, self.num_stages)
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        self.feature_info = []
        for i in range(self.num_stages):
            embed = OverlapPatchEmbed(7 if i == 0 else 3, 4 if i == 0 else 2,
                                      in_chans if i == 0 else embed_dims[i - 1], embed_dims[i])
            blocks = nn.CellList([
                Block(embed_dims[i], mlp_ratios[i], drop_rate, dpr[cur + j], layer_scale_init, kernel_size, dilation)
                for j in range(depths[i])
            ])
            cur += depths[i]
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", channel_layer_norm(embed_dims[i], eps=1e-6))
            self.feature_info.append({"num_chs": embed_dims[i], "reduction": 4 * 2 ** i, "module": f"norm{i + 1}"})
        self.num_features = embed_dims[-1]
        if not features_only and num_classes > 0:
            self.head = nn.Dense(embed_dims[-1], num_classes, weight_init=init.TruncatedNormal(sigma=0.02))
        else:
            self.head = nn.Identity()
        self.stages = [(getattr(self, f"patch_embed{i + 1}"), getattr(self, f"block{i + 1}"),
                        getattr(self, f"norm{i + 1}")) for i in range(self.num_stages)]
        self._init_weights()

    def _init_weights(self) -> None:
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Conv2d):
                cell.weight.set_data(init.initializer(
                    conv_fan_out_normal(cell.out_channels, cell.kernel_size, cell.group),
                    cell.weight.shape, cell.weight.dtype))
                if cell.bias is not None:
                    cell.bias.set_data(init.initializer(init.Zero(), cell.bias.shape, cell.bias.dtype))
            elif isinstance(cell, nn.Dense) and cell.bias is not None:
                cell.bias.set_data(init.initializer(init.Zero(), cell.bias.shape, cell.bias.dtype))

    def forward_stages(self, x) -> Tuple:
        x = check_nchw(x, self.in_chans, "VAN")
        outs = ()
        for embed, blocks, norm in self.stages:
            x = embed(x)
            for blk in blocks:
                x = blk(x)
            x = norm(x)
            outs = outs + (x,)
        return outs

    def forward_head(self, x):
        x = ops.mean(x, axis=(2, 3))
        return self.head(x)


# name: architecture arguments (official drop_path_rate; mlp_ratios (8, 8, 4, 4) for every variant) and params.
_MLP = {"mlp_ratios": (8, 8, 4, 4)}
VARIANTS = {
    # formerly van_tiny: 4.11 M params
    "van_b0": dict(embed_dims=(32, 64, 160, 256), depths=(3, 3, 5, 2), drop_path_rate=0.1, **_MLP),
    # formerly van_small: 13.86 M
    "van_b1": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 4, 2), drop_path_rate=0.1, **_MLP),
    # formerly van_base: 26.58 M
    "van_b2": dict(embed_dims=(64, 128, 320, 512), depths=(3, 3, 12, 3), drop_path_rate=0.1, **_MLP),
    # formerly van_large: 44.77 M
    "van_b3": dict(embed_dims=(64, 128, 320, 512), depths=(3, 5, 27, 3), drop_path_rate=0.2, **_MLP),
    # 60.28 M; drop path 0.2 (mmpretrain and the official fine-tune scripts)
    "van_b4": dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), drop_path_rate=0.2, **_MLP),
    # 89.97 M
    "van_b5": dict(embed_dims=(96, 192, 480, 768), depths=(3, 3, 24, 3), drop_path_rate=0.2, **_MLP),
    # 199.83 M (stage-3 width 384, as the official code and VAN-Segmentation)
    "van_b6": dict(embed_dims=(96, 192, 384, 768), depths=(6, 6, 90, 6), drop_path_rate=0.3, **_MLP),
}

register_variants(__name__, VAN, VARIANTS, default_cfgs)
