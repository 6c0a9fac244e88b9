"""ACmix-SAN: SAN (patchwise) whose self-attention modules also run an ACmix convolution path.

Refer to "On the Integration of Self-Attention and Convolution" (Pan et al., CVPR 2022, arXiv 2111.14556), README
of LeapLabTHU/ACmix (SAN-10 / 15 / 19 rows: 12.1 / 16.6 / 21.2 M params, 1.9 / 2.7 / 3.4 G FLOPs, 77.6 / 78.4 /
78.7 % top-1; weights "in process", never released). **No official code exists**: the network is designed from the
paper on top of SAN (:class:`convattn.models.san.SAN`, official hszhao/SAN layout) and the zoo's ACmix conv path.

Design choices (the paper gives the recipe, not the SAN wiring):

1. Where: inside every SAN bottleneck, in the SAM, which is SAN's counterpart of the 3x3 conv that ACmix replaces in
   ResNet. Stem, transitions (max-pool + 1x1 + BN), BN1/BN2, the bottleneck's output 1x1 and the head are SAN's.
2. Shared stage I: SAM's own 1x1 projections ``conv1`` (phi, C/16), ``conv2`` (psi, C/16), ``conv3`` (beta, C/4),
   with their biases; no extra projection is added.
3. Attention path: the SAM aggregation unchanged (patchwise for the registered models; ``sa_type='pairwise'`` works
   too), reflection padding, footprint 3 in stage 0 and 7 elsewhere.
4. Convolution path: ACmix's ``fc`` (1x1 over head maps, **no bias**, as in ACmix-ResNet) + ``dep_conv`` (3x3,
   groups = head_dim, **no bias**, shift-initialised), via :class:`~convattn.layers.acmix.ConvPathMixin`.
5. Heads: ``head_dim = C/4 / share_planes = C/32`` (SAN's attention-weight channel count), so phi and psi give 2
   heads each and beta 8: ``fc`` mixes 12 maps into 9. Any head_dim dividing C/16 gives the same ``dep_conv``
   (``C/4 * 81`` weights); it changes only ``fc`` (``9 * maps`` weights). Override with ``head_dim=``.
6. Output width: ``dep_conv`` emits C/4 channels, added to the SAM output (``rate1 * att + rate2 * conv``, both 0.5
   at init, one pair per SAM) before BN2 -> ReLU -> 1x1 (C/4 -> C).
7. Ascend: ``depthwise_conv=True`` (default on Ascend) gives the depth-wise form of ``dep_conv``; official-style
   grouped weights convert by a reshape (``convert_rules='acmix'``).

Fidelity (1000 classes, 224 px; MACs = conv + dense only, ``convattn.bench.macs.count_macs``, which does not count
SAN's aggregation, as for the SAN baselines):

| model       | params: ours / README      | GMACs: ours (README) | SAN patchwise: params / GMACs |
|-------------|----------------------------|----------------------|-------------------------------|
| acmix_san10 | 11.995 M / 12.1 M (-0.9 %) | 1.854 (1.9)          | 11.841 M / 1.757              |
| acmix_san15 | 16.415 M / 16.6 M (-1.1 %) | 2.575 (2.7)          | 16.181 M / 2.424              |
| acmix_san19 | 20.830 M / 21.2 M (-1.7 %) | 3.244 (3.4)          | 20.518 M / 3.057              |

Added per bottleneck of width C: ``C/4 * 81`` (``dep_conv``) ``+ 9 * 12`` (``fc``) ``+ 2`` (rates). The README's SAN
baselines equal our SAN counts, so the remaining 0.10 / 0.19 / 0.37 M belong to the unreleased design; we found no
conv-path wiring consistent with the paper (``fc`` 3N -> k^2 as confirmed in ACmix issue #5, shift-initialised grouped
3x3) that reproduces them exactly, and kept the plainest one. top-1 in the default cfgs is the README's; no weights
exist, so it is unverified here.

Parameter names: SAN's (``layer{i}.{k}.sam.conv1/2/3``, ``sam.conv_w.*``) plus ``sam.fc``, ``sam.dep_conv``,
``sam.rate1``, ``sam.rate2``.
"""
from typing import Optional

from ..layers.acmix_san import ACmixSAM
from .builder import register_variants
from .registry import IMAGENET_MEAN, IMAGENET_STD, model_cfg, unreleased_weights
from .san import SAN, SAN_LAYERS, Bottleneck

__all__ = ["ACmixBottleneck", "acmix_san"]

_PAPER = "On the Integration of Self-Attention and Convolution (CVPR 2022, arXiv 2111.14556)"


def _cfg(top1=None, **kwargs):
    # SAN's evaluation transform (Resize 256 -> CenterCrop 224, bilinear); weights never released.
    return model_cfg(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bilinear",
        first_conv="conv_in", classifier="fc", paper=_PAPER, upstream="none (designed from the paper)",
        convert_rules="acmix", top1=top1,
        # every stage, both paths, half width, 3x3 footprints: 64 px leaves the last stage at 2x2 > reflect pad 1
        small_kwargs={"layers": (1, 1, 1, 1, 1), "kernels": (3, 3, 3, 3, 3), "base_width": 32},
        small_input_size=(3, 64, 64), **kwargs,
    )


# top-1 from the ACmix README (SAN rows).
_NONE = unreleased_weights("LeapLabTHU/ACmix lists ACmix-SAN weights as 'In process': never released")
default_cfgs = {
    "acmix_san10": _cfg(top1=77.6, weights=_NONE),
    "acmix_san15": _cfg(top1=78.4, weights=_NONE),
    "acmix_san19": _cfg(top1=78.7, weights=_NONE),
}


class ACmixBottleneck(Bottleneck):
    """SAN's pre-activation bottleneck with :class:`~convattn.layers.acmix_san.ACmixSAM` as its ``sam``."""

    sam_cls = ACmixSAM


def acmix_san(head_dim: Optional[int] = None, depthwise_conv: Optional[bool] = None, **kwargs) -> SAN:
    """:class:`~convattn.models.san.SAN` built with :class:`ACmixBottleneck` (``head_dim``, ``depthwise_conv``: the
    conv path of :class:`~convattn.layers.acmix_san.ACmixSAM`)."""
    kwargs.setdefault("block", ACmixBottleneck)
    return SAN(head_dim=head_dim, depthwise_conv=depthwise_conv, **kwargs)


_K = (3, 7, 7, 7, 7)
VARIANTS = {  # patchwise (sa_type='pairwise' works too); params: ours (README)
    "acmix_san10": dict(sa_type="patchwise", layers=SAN_LAYERS["san10"], kernels=_K),  # 12.00 M (12.1 M)
    "acmix_san15": dict(sa_type="patchwise", layers=SAN_LAYERS["san15"], kernels=_K),  # 16.41 M (16.6 M)
    "acmix_san19": dict(sa_type="patchwise", layers=SAN_LAYERS["san19"], kernels=_K),  # 20.83 M (21.2 M)
}

register_variants(__name__, SAN, VARIANTS, default_cfgs, build=acmix_san)
