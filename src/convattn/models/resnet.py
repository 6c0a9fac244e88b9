"""MindSpore ResNet (torchvision v1.5 Bottleneck) with a pluggable 3x3 spatial layer, and ACmix-ResNet.

Refer to "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016) in the torchvision v1.5 layout
(stride on the 3x3 conv), and to "On the Integration of Self-Attention and Convolution" (Pan et al., CVPR 2022)
for ACmix-ResNet, whose official code (LeapLabTHU/ACmix @ 81dddb6, ``ResNet/ResNet_ImageNet.py``) replaces each
Bottleneck's ``conv2`` by ``ACmix(width, width, k_att=7, head=4, k_conv=3, stride)``.

The 3x3 position is a factory ``spatial_layer(width, stride, dilation) -> Cell`` so other operators (ACmix,
X-volution, ...) plug into this one ResNet. Cell names equal torchvision's (``conv1, bn1, layer1.0.conv2.*,
layer1.0.downsample.0/1, fc``), so official checkpoints map by the generic renames (plus the ``acmix`` rule for
the depth-wise form of ``dep_conv``).

Depths: ResNet-26 ``(1, 2, 4, 1)``, ResNet-38 ``(2, 3, 5, 2)``, ResNet-50 ``(3, 4, 6, 3)`` (SAN / ACmix ``main.py``).

Parameter counts (1000 classes, trainable): ACmix-ResNet-26/38/50 = 10.49 / 14.41 / 18.33 M, exactly the
official ``ACmix_ResNet``; the ACmix README prints 10.6 / 14.6 / 18.6 M. The gap (~1.1-1.5 %) is not explained by
``dep_conv`` biases (deleted in the official module; adding them back gives +0.02 M) nor by non-trainable buffers
(BN running stats add ~0.05 M); we match the released code, which is what the numbers on this page reproduce.

Initialisation follows the official ``ResNet.__init__``: every ``Conv2d`` (including those *inside* ACmix, so the
shift initialisation of ``dep_conv`` is overwritten, as upstream) gets Kaiming-normal fan-out, BatchNorm 1 / 0.
"""
from typing import Callable, Optional, Sequence, Tuple

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import initializer as init

from ..layers import ACmix, batch_norm2d, check_nchw, conv2d, conv_fan_out_normal, max_pool2d
from ..layers.acmix import ConvPathMixin
from .base import StagedClassifier, check_min_input_size, reflect_padding, smallest_input_side
from .builder import check_out_indices, register_variants
from .registry import model_cfg, official_weights, unreleased_weights

__all__ = ["ResNet", "Bottleneck", "BasicBlock", "conv3x3_layer", "acmix_layer", "acmix_resnet"]

_RESNET_PAPER = "Deep Residual Learning for Image Recognition (arXiv 1512.03385), torchvision v1.5 layout"
_ACMIX_PAPER = "On the Integration of Self-Attention and Convolution (arXiv 2111.14556, CVPR 2022)"
_ACMIX_UPSTREAM = "LeapLabTHU/ACmix@81dddb6 ResNet/ResNet_ImageNet.py"
_TV_UPSTREAM = "pytorch/vision torchvision/models/resnet.py (Bottleneck v1.5)"


def _cfg(top1=None, acmix=False, **kwargs):
    kwargs.setdefault("paper", _ACMIX_PAPER if acmix else _RESNET_PAPER)
    return model_cfg(
        crop_pct=0.875, interpolation="bilinear", first_conv="conv1", classifier="fc",
        upstream=_ACMIX_UPSTREAM if acmix else _TV_UPSTREAM,
        convert_rules="acmix", top1=top1, small_kwargs={"layers": (1, 1, 1, 1)}, small_input_size=(3, 64, 64),
        **kwargs,
    )


# top-1: ACmix README (baseline = ACmix row minus its delta, equal to the SAN README's ResNet-26/38/50).
def _tv_weights(file, prefix, top1, note=None):
    return official_weights(
        file, (f"https://download.pytorch.org/models/{file}",), top1=top1, sha256_prefix=prefix,
        container="plain state_dict", licence="BSD-3-Clause (pytorch/vision code); trained on ImageNet-1k",
        note=note)


_ACMIX_NONE = unreleased_weights("LeapLabTHU/ACmix released no ACmix-ResNet weights")
_BASELINE_NONE = unreleased_weights("the ACmix/SAN ResNet-26/38 baselines were never released (torchvision has no "
                                    "ResNet-26/38)")

default_cfgs = {
    "resnet26": _cfg(top1=73.6, weights=_BASELINE_NONE),
    "resnet38": _cfg(top1=76.0, weights=_BASELINE_NONE),
    "resnet50": _cfg(top1=76.9, weights=_tv_weights(
        "resnet50-0676ba61.pth", "0676ba61", 76.13,
        note="torchvision's V1 weights (the v1.5 layout); its V2 weights (80.86 %, resnet50-11ad3fa6.pth, full sha256 "
             "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca) load with pretrained='that file'")),
    "resnet34": _cfg(top1=73.3, paper=_RESNET_PAPER.replace("v1.5 layout", "BasicBlock"),  # torchvision V1 weights
                     weights=_tv_weights("resnet34-b627a593.pth", "b627a593", 73.31)),
    "acmix_resnet26": _cfg(top1=76.1, acmix=True, weights=_ACMIX_NONE),
    "acmix_resnet38": _cfg(top1=77.4, acmix=True, weights=_ACMIX_NONE),
    "acmix_resnet50": _cfg(top1=77.8, acmix=True, weights=_ACMIX_NONE),
}

SpatialFactory = Callable[[int, int, int], nn.Cell]


def conv3x3_layer(width: int, stride: int, dilation: int, in_channels: Optional[int] = None) -> nn.Cell:
    """The plain 3x3 conv of the torchvision blocks (no bias, padding = dilation); ``in_channels`` defaults to width."""
    return conv2d(width if in_channels is None else in_channels, width, 3, stride=stride, pad_mode="pad",
                  padding=dilation, dilation=dilation, has_bias=False)


def acmix_layer(k_att: int = 7, head: int = 4, k_conv: int = 3, depthwise_conv: Optional[bool] = None) -> SpatialFactory:
    """A spatial-layer factory that builds ``ACmix(width, width, k_att, head, k_conv, stride, dilation)``."""

    def build(width: int, stride: int, dilation: int, in_channels: Optional[int] = None) -> nn.Cell:
        return ACmix(width if in_channels is None else in_channels, width, k_att, head, k_conv, stride=stride,
                     dilation=dilation, depthwise_conv=depthwise_conv)

    return build


class Bottleneck(nn.Cell):
    """1x1 -> BN -> ReLU -> spatial (3x3 conv or ACmix, carries the stride) -> BN -> ReLU -> 1x1 -> BN, + shortcut,
    ReLU. Each ReLU (after the shortcut's addition for the last) is part of the BatchNorm cell before it
    (``batch_norm2d(act=...)``: one fused kernel on the CPU, BatchNorm + Add + ReLU elsewhere)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Cell] = None,
                 spatial_layer: SpatialFactory = conv3x3_layer, dilation: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv2d(inplanes, width, 1, has_bias=False, pad_mode="valid")
        self.bn1 = batch_norm2d(width, act="relu")
        self.conv2 = spatial_layer(width, stride, dilation)
        self.bn2 = batch_norm2d(width, act="relu")
        self.conv3 = conv2d(width, planes * self.expansion, 1, has_bias=False, pad_mode="valid")
        self.bn3 = batch_norm2d(planes * self.expansion, act="add_relu")
        self.downsample = downsample
        self.has_downsample = downsample is not None

    def construct(self, x):
        identity = x
        out = self.bn1(self.conv1(x))
        out = self.bn2(self.conv2(out))
        if self.has_downsample:
            identity = self.downsample(x)
        return self.bn3(self.conv3(out), identity)


class BasicBlock(nn.Cell):
    """torchvision BasicBlock: spatial 3x3 (carries the stride) -> BN -> ReLU -> spatial 3x3 -> BN, + shortcut, ReLU
    (each ReLU part of the BatchNorm cell before it, as in :class:`Bottleneck`).

    Both 3x3 positions are built by the spatial-layer factory: ``conv1`` as ``(planes, stride, dilation, inplanes)``,
    ``conv2`` as ``(planes, 1, dilation)``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Cell] = None,
                 spatial_layer: SpatialFactory = conv3x3_layer, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = spatial_layer(planes, stride, dilation, inplanes)
        self.bn1 = batch_norm2d(planes, act="relu")
        self.conv2 = spatial_layer(planes, 1, dilation)
        self.bn2 = batch_norm2d(planes, act="add_relu")
        self.downsample = downsample
        self.has_downsample = downsample is not None

    def construct(self, x):
        identity = x
        out = self.bn1(self.conv1(x))
        if self.has_downsample:
            identity = self.downsample(x)
        return self.bn2(self.conv2(out), identity)


_BLOCKS = {"bottleneck": Bottleneck, "basic": BasicBlock}


class ResNet(StagedClassifier, nn.Cell):
    """ResNet with Bottleneck blocks (torchvision v1.5) and a pluggable 3x3 spatial layer.

    Args:
        layers: blocks per stage (four stages of widths 64, 128, 256, 512; expansion 4 for Bottleneck, 1 for Basic).
        spatial_layer: factory ``(width, stride, dilation[, in_channels]) -> Cell`` for the 3x3 positions, or a
            sequence of four factories (one per stage: X-volution replaces the 3x3 convs of chosen stages).
        block: ``'bottleneck'`` (torchvision v1.5 Bottleneck, default) or ``'basic'`` (BasicBlock, ResNet-18/34).
        num_classes: classifier size (0: the pooled features are returned).
        in_chans: input channels.
        zero_init_residual: zero the last BN gamma of every block (torchvision option, off by default).
        features_only / out_indices: return the stage maps (strides 4, 8, 16, 32) instead of logits.
    """

    recompute_unit = (Bottleneck, BasicBlock)  # set_recompute marks each of these

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), spatial_layer: SpatialFactory = conv3x3_layer,
                 num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
                 features_only: bool = False, out_indices: Optional[Sequence[int]] = None,
                 block: str = "bottleneck") -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got '{block}'")
        self.block = _BLOCKS[block]
        factories = tuple(spatial_layer) if isinstance(spatial_layer, (tuple, list)) else (spatial_layer,) * 4
        if len(factories) != 4:
            raise ValueError(f"spatial_layer needs one factory or four (one per stage), got {len(factories)}")
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers needs four positive block counts (one per stage), got {layers}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, 4)
        self.inplanes = 64
        self.conv1 = conv2d(in_chans, 64, 7, stride=2, pad_mode="pad", padding=3, has_bias=False)
        self.bn1 = batch_norm2d(64, act="relu")  # the stem's ReLU
        self.maxpool = max_pool2d(3, 2, 1)
        self.feature_info = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = self._make_layer(planes, blocks, 1 if i == 0 else 2, factories[i])
            setattr(self, f"layer{i + 1}", stage)
            self.feature_info.append({"num_chs": planes * self.block.expansion, "reduction": 4 * 2 ** i,
                                      "module": f"layer{i + 1}"})
        self.stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        self.num_features = 512 * self.block.expansion
        if not features_only and num_classes > 0:
            self.fc = nn.Dense(self.num_features, num_classes)
        else:
            self.fc = nn.Identity()
        self._init_weights(zero_init_residual)
        self.min_input_size = self._min_input_side()

    def _min_input_side(self) -> int:
        """Smallest square input whose feature maps are larger than every reflection padding (ACmix attention)
        at the point where it is applied; 1 for a network without reflection-padded layers."""
        needs = []  # (pad, index of the block, spatial layer after the block's stride?)
        for stage in self.stages:
            for blk in stage:
                convs = (("conv2", False),) if isinstance(blk, Bottleneck) else (("conv1", False), ("conv2", True))
                needs.append([(reflect_padding(getattr(blk, n)), after) for n, after in convs])
        if not any(p for block in needs for p, _ in block):
            return 1
        strides = [2 if (i > 0 and j == 0) else 1 for i, stage in enumerate(self.stages) for j in range(len(stage))]

        def fits(side: int) -> bool:
            side = (side - 1) // 2 + 1  # 7x7 stride-2 stem
            side = (side - 1) // 2 + 1  # 3x3 stride-2 max-pool
            for block, stride in zip(needs, strides):
                out = -(-side // stride)
                if any(p and (out if after else side) <= p for p, after in block):
                    return False
                side = out
            return True

        self.min_input_reason = (f"its ACmix attention reflection-pads by "
                                 f"{max(p for block in needs for p, _ in block)} pixels, which needs feature maps "
                                 f"larger than that at every stride up to 32")
        return smallest_input_side(fits)

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError for an input smaller than :attr:`min_input_size` (the exporter calls this too)."""
        if self.min_input_size > 1:
            check_min_input_size("ResNet", self.min_input_size, h, w, self.min_input_reason)

    def _make_layer(self, planes: int, blocks: int, stride: int, spatial_layer: SpatialFactory) -> nn.SequentialCell:
        downsample = None
        block, expansion = self.block, self.block.expansion
        if stride != 1 or self.inplanes != planes * expansion:
            downsample = nn.SequentialCell([
                conv2d(self.inplanes, planes * expansion, 1, stride=stride, has_bias=False, pad_mode="valid"),
                batch_norm2d(planes * expansion),
            ])
        cells = [block(self.inplanes, planes, stride, downsample, spatial_layer)]
        self.inplanes = planes * expansion
        for _ in range(1, blocks):
            cells.append(block(self.inplanes, planes, 1, None, spatial_layer))
        return nn.SequentialCell(cells)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for _, cell in self.cells_and_names():
            if isinstance(cell, nn.Conv2d):
                cell.weight.set_data(init.initializer(
                    conv_fan_out_normal(cell.out_channels, cell.kernel_size, 1), cell.weight.shape, cell.weight.dtype))
            if isinstance(cell, ConvPathMixin) and cell.depthwise_conv:
                # same distribution as the grouped weight (out, k*k, k, k) the official init draws
                w = cell.dep_conv.weight
                w.set_data(init.initializer(conv_fan_out_normal(cell.out_planes, cell.kernel_conv, 1), w.shape, w.dtype))
        if zero_init_residual:
            for _, cell in self.cells_and_names():
                last = cell.bn3 if isinstance(cell, Bottleneck) else cell.bn2 if isinstance(cell, BasicBlock) else None
                if last is not None:
                    last.gamma.set_data(init.initializer(init.Zero(), last.gamma.shape, last.gamma.dtype))

    def forward_stages(self, x) -> Tuple:
        x = check_nchw(x, self.in_chans, "ResNet")
        self.check_input_size(x.shape[2], x.shape[3])
        x = self.maxpool(self.bn1(self.conv1(x)))
        outs = ()
        for stage in self.stages:
            x = stage(x)
            outs = outs + (x,)
        return outs

    def forward_head(self, x):
        return self.fc(ops.mean(x, axis=(2, 3)))


def acmix_resnet(k_att: int = 7, head: int = 4, k_conv: int = 3, depthwise_conv: Optional[bool] = None,
                 **kwargs) -> ResNet:
    """:class:`ResNet` whose 3x3 convs are ``ACmix(width, width, k_att, head, k_conv, stride)`` (official code)."""
    return ResNet(spatial_layer=acmix_layer(k_att, head, k_conv, depthwise_conv), **kwargs)


# blocks per stage (SAN / ACmix main.py; torchvision); params at 1000 classes
VARIANTS = {
    "resnet26": dict(layers=(1, 2, 4, 1)),                   # 13.70 M (SAN / ACmix baseline)
    "resnet38": dict(layers=(2, 3, 5, 2)),                   # 19.61 M
    "resnet50": dict(layers=(3, 4, 6, 3)),                   # 25.56 M (torchvision v1.5)
    "resnet34": dict(layers=(3, 4, 6, 3), block="basic"),    # 21.80 M (torchvision BasicBlock)
}
ACMIX_VARIANTS = {  # official code; the README prints 10.6 / 14.6 / 18.6 M
    "acmix_resnet26": dict(layers=(1, 2, 4, 1)),             # 10.49 M
    "acmix_resnet38": dict(layers=(2, 3, 5, 2)),             # 14.41 M
    "acmix_resnet50": dict(layers=(3, 4, 6, 3)),             # 18.33 M
}

register_variants(__name__, ResNet, VARIANTS, default_cfgs)
register_variants(__name__, ResNet, ACMIX_VARIANTS, default_cfgs, build=acmix_resnet)
