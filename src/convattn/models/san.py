"""MindSpore implementation of SAN. Refer to Exploring Self-attention for Image Recognition (Zhao, Jia, Koltun,
CVPR 2020, arXiv 2004.13621).

Follows the official ``model/san.py`` (hszhao/SAN @ d88b022): a 1x1 stem at full resolution, five stages of
``max-pool 2x2 -> 1x1 conv -> pre-activation SA bottlenecks -> BN -> ReLU`` (widths 64, 256, 512, 1024, 2048),
global average pooling and a linear classifier. Cell names equal the official module names (``conv_in``,
``bn_in``, ``conv{i}``, ``bn{i}``, ``layer{i}.{k}.{bn1, sam.*, bn2, conv}``, ``fc``), so official checkpoints
convert by the generic PyTorch -> MindSpore renames alone (``convert_rules='san'``). The SAM operator is
:class:`convattn.layers.san_attention.SAM` (no CUDA-only kernels).
"""
from typing import Optional, Sequence, Tuple

from mindspore import nn, ops

from ..layers import check_nchw
from ..layers.san_attention import SAM, sa_type_name
from .base import StagedClassifier, check_min_input_size, reflect_padding, smallest_input_side
from .builder import check_out_indices, register_variants
from .registry import IMAGENET_MEAN, IMAGENET_STD, manual_weights, model_cfg

__all__ = ["SAN", "Bottleneck", "SAN_LAYERS"]

_PAPER = "Exploring Self-attention for Image Recognition (CVPR 2020, arXiv 2004.13621)"
_UPSTREAM = "hszhao/SAN@d88b022 model/san.py"


def _cfg(top1=None, **kwargs):
    # tool/test.py: Resize 256 -> CenterCrop 224 (torchvision bilinear), ImageNet mean/std.
    return model_cfg(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bilinear",
        first_conv="conv_in", classifier="fc", paper=_PAPER, upstream=_UPSTREAM, convert_rules="san", top1=top1,
        # one block per stage keeps every stage; 128 px leaves the last (k=7) stage at 4x4 > its reflect pad 3
        small_kwargs={"layers": (1, 1, 1, 1, 1)}, small_input_size=(3, 128, 128), **kwargs,
    )


# top-1 from the official README (hszhao/SAN).
def _weights(top1):
    # the SAN README's one link: a Google Drive folder (not scriptable); the trainer saves DataParallel keys
    return manual_weights(
        "https://drive.google.com/open?id=19ZJn48UpiF_j8e1-UU9UZ4AVfLjmwPzH", top1=top1,
        container="SAN trainer: {'state_dict' (keys prefixed 'module.'), 'epoch', ...}",
        licence="MIT (hszhao/SAN); trained on ImageNet-1k")


default_cfgs = {
    "san10_pairwise": _cfg(top1=74.9, weights=_weights(74.9)),
    "san15_pairwise": _cfg(top1=76.6, weights=_weights(76.6)),
    "san19_pairwise": _cfg(top1=76.9, weights=_weights(76.9)),
    "san10_patchwise": _cfg(top1=77.1, weights=_weights(77.1)),
    "san15_patchwise": _cfg(top1=78.0, weights=_weights(78.0)),
    "san19_patchwise": _cfg(top1=78.2, weights=_weights(78.2)),
}


def _conv1x1(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, pad_mode="valid", has_bias=bias)


class Bottleneck(nn.Cell):
    """Pre-activation SA bottleneck: ``x + conv(ReLU(BN2(SAM(ReLU(BN1(x))))))``.

    The official arguments (``sa_type, in_planes, rel_planes, mid_planes, out_planes, share_planes, kernel_size,
    stride``) come first; ``**sam_kwargs`` (relation, mapping, position_encoding, export_safe) go to :class:`SAM`.
    ACmix's ``acmix_san*`` models build on this class: a subclass sets ``sam_cls`` to its attention module (built
    with the same arguments).
    """

    sam_cls = SAM

    def __init__(self, sa_type, in_planes: int, rel_planes: int, mid_planes: int, out_planes: int,
                 share_planes: int = 8, kernel_size: int = 7, stride: int = 1, **sam_kwargs) -> None:
        super().__init__()
        if in_planes != out_planes or stride != 1:
            raise ValueError(f"SAN Bottleneck adds its input back unchanged, so it needs in_planes == out_planes and "
                             f"stride 1; got in_planes={in_planes}, out_planes={out_planes}, stride={stride} "
                             "(SAN changes width and resolution in the transitions between stages instead)")
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.sam = self.sam_cls(sa_type, in_planes, rel_planes, mid_planes, share_planes, kernel_size, stride, **sam_kwargs)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv = _conv1x1(mid_planes, out_planes, bias=True)
        self.relu = nn.ReLU()

    def construct(self, x):
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out)))
        return self.conv(out) + x


class SAN(StagedClassifier, nn.Cell):
    """Self-attention network.

    Args:
        sa_type: ``'pairwise'`` or ``'patchwise'`` (official 0 / 1).
        layers: bottlenecks per stage (five stages).
        kernels: footprint per stage (official (3, 7, 7, 7, 7)).
        num_classes: classifier size (0: no classifier, pooled features are returned).
        in_chans: input channels.
        base_width: stage-0 width (official 64; stages are base, 4x, 8x, 16x, 32x). Smaller widths make quick
            CPU experiments; they must keep every stage width / 4 divisible by ``share_planes``.
        share_planes: feature channels per attention-weight channel (official 8).
        relation, mapping, position_encoding: the paper's SAM alternatives (see :mod:`convattn.layers.san_attention`).
        block: the bottleneck class (``Bottleneck``; ACmix substitutes its own with the same signature).
        features_only / out_indices: return the stage maps (strides 2, 4, 8, 16, 32) instead of logits.
    """

    recompute_unit = (Bottleneck,)  # set_recompute marks each of these (ACmixBottleneck subclasses it)

    def __init__(
        self,
        sa_type="pairwise",
        layers: Sequence[int] = (3, 3, 4, 6, 3),
        kernels: Sequence[int] = (3, 7, 7, 7, 7),
        num_classes: int = 1000,
        in_chans: int = 3,
        base_width: int = 64,
        share_planes: int = 8,
        relation: Optional[str] = None,
        mapping: str = "r-l-r-l",
        position_encoding: bool = True,
        block=Bottleneck,
        features_only: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        **block_kwargs,
    ) -> None:
        super().__init__()
        self.sa_type = sa_type_name(sa_type)
        if len(layers) != 5 or len(kernels) != 5:
            raise ValueError(f"SAN has five stages: layers and kernels need five entries each, got "
                             f"layers={tuple(layers)}, kernels={tuple(kernels)}")
        widths = [base_width * m for m in (1, 4, 8, 16, 32)]
        for c in widths:
            if c % 16 or (c // 4) % share_planes:
                raise ValueError(
                    f"SAN stage width {c} (base_width={base_width}) must be divisible by 16 (rel_planes = C/16) and C/4 "
                    f"by share_planes={share_planes}; use a base_width that is a multiple of {max(16, 4 * share_planes)}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.features_only = features_only
        self.out_indices = check_out_indices(out_indices, 5)
        sam_kwargs = dict(relation=relation, mapping=mapping, position_encoding=position_encoding, **block_kwargs)

        self.conv_in = _conv1x1(in_chans, base_width)
        self.bn_in = nn.BatchNorm2d(base_width)
        self.feature_info = []
        prev = base_width
        for i, c in enumerate(widths):
            setattr(self, f"conv{i}", _conv1x1(prev, c))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c))
            setattr(self, f"layer{i}", nn.SequentialCell([
                block(sa_type, c, c // 16, c // 4, c, share_planes, kernels[i], 1, **sam_kwargs)
                for _ in range(layers[i])
            ]))
            self.feature_info.append({"num_chs": c, "reduction": 2 ** (i + 1), "module": f"bn{i}"})
            prev = c
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.num_features = widths[-1]
        self.fc = nn.Dense(widths[-1], num_classes) if (num_classes > 0 and not features_only) else nn.Identity()
        self.stages = [(getattr(self, f"conv{i}"), getattr(self, f"layer{i}"), getattr(self, f"bn{i}"))
                       for i in range(5)]
        pads = [reflect_padding(getattr(self, f"layer{i}")) for i in range(5)]
        # stage i runs at side // 2**(i+1) (2x2 max-pools); its windows reflection-pad by pads[i]

        def fits(side: int) -> bool:
            for p in pads:
                side //= 2
                if side <= p:
                    return False
            return True

        self.min_input_size = smallest_input_side(fits)
        self.min_input_reason = (f"stage i runs at 1/2^(i+1) of the input and its attention windows reflection-pad "
                                 f"by {list(pads)} pixels, which needs feature maps larger than that")

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError for an input smaller than :attr:`min_input_size` (the exporter calls this too)."""
        check_min_input_size("SAN", self.min_input_size, h, w, self.min_input_reason)

    def forward_stages(self, x) -> Tuple:
        x = check_nchw(x, self.in_chans, "SAN")
        self.check_input_size(x.shape[2], x.shape[3])
        x = self.relu(self.bn_in(self.conv_in(x)))
        outs = ()
        for conv, layer, bn in self.stages:
            x = self.relu(bn(layer(conv(self.pool(x)))))
            outs = outs + (x,)
        return outs

    def forward_head(self, x):
        return self.fc(ops.mean(x, axis=(2, 3)))


# bottlenecks per stage of SAN10 / 15 / 19 (official kernels (3, 7, 7, 7, 7)); public so ACmix-SAN reuses them
SAN_LAYERS = {"san10": (2, 1, 2, 4, 1), "san15": (3, 2, 3, 5, 2), "san19": (3, 3, 4, 6, 3)}
_K = (3, 7, 7, 7, 7)
VARIANTS = {
    "san10_pairwise": dict(sa_type="pairwise", layers=SAN_LAYERS["san10"], kernels=_K),    # 10.53 M params
    "san15_pairwise": dict(sa_type="pairwise", layers=SAN_LAYERS["san15"], kernels=_K),    # 14.07 M
    "san19_pairwise": dict(sa_type="pairwise", layers=SAN_LAYERS["san19"], kernels=_K),    # 17.60 M
    "san10_patchwise": dict(sa_type="patchwise", layers=SAN_LAYERS["san10"], kernels=_K),  # 11.84 M
    "san15_patchwise": dict(sa_type="patchwise", layers=SAN_LAYERS["san15"], kernels=_K),  # 16.18 M
    "san19_patchwise": dict(sa_type="patchwise", layers=SAN_LAYERS["san19"], kernels=_K),  # 20.52 M
}

register_variants(__name__, SAN, VARIANTS, default_cfgs)
