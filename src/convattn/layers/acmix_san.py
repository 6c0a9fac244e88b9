"""ACmix on SAN: SAN's self-attention module (SAM) with an ACmix shift-convolution path on the same projections.

Refer to "On the Integration of Self-Attention and Convolution" (Pan et al., CVPR 2022, arXiv 2111.14556) and
"Exploring Self-attention for Image Recognition" (Zhao, Jia, Koltun, CVPR 2020). The ACmix authors report SAN-ACmix
results but never released its code (LeapLabTHU/ACmix holds only the ResNet and Swin forms), so this module is
*designed from the paper*; every choice is listed here and in :mod:`convattn.models.acmix_san`.

ACmix's recipe: stage I = the 1x1 projections, shared; stage II = (a) the attention aggregation and (b) a light
convolution (``fc`` over the head maps -> k*k maps, then the shift-initialised grouped ``dep_conv``); the output is
``rate1 * attention + rate2 * convolution`` with learnable scalars, both 0.5 at init. In SAN the stage-I projections
are SAM's ``conv1`` (phi, ``rel_planes`` = C/16), ``conv2`` (psi, C/16) and ``conv3`` (beta, ``out_planes`` = C/4):

* attention path: SAM unchanged (pairwise or patchwise weights, the same reflection-padded aggregation);
* convolution path: :class:`~convattn.layers.acmix.ConvPathMixin` (the one ACmix conv path of the zoo, with
  ``fc`` without bias and ``dep_conv`` without bias as in the official convolution-style module), fed with phi, psi
  and beta cut into "heads" of ``head_dim`` channels. SAN's projections differ in width, so the head counts differ:
  phi and psi give ``rel_planes / head_dim`` heads each, beta ``out_planes / head_dim``; ``fc`` mixes all of them
  (``2 * rel_planes / head_dim + out_planes / head_dim`` maps, in the order phi heads, psi heads, beta heads, the
  official q, k, v order) into k*k maps. ``head_dim`` defaults to SAN's number of attention-weight channels
  ``out_planes / share_planes``: SAM splits beta into ``share_planes`` blocks of that many channels that share one
  set of weights, so those blocks are SAN's heads (official widths: 2 + 2 + 8 = 12 head maps per block).
* ``dep_conv`` maps ``k*k * head_dim`` inputs to ``out_planes`` (C/4) outputs in ``head_dim`` groups, so its output
  adds to the SAM output before the bottleneck's BN2 -> ReLU -> 1x1. Its parameter count (``out_planes * k^4``) does
  not depend on ``head_dim``; ``head_dim`` only changes ``fc`` (``9 * maps``).
"""
from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, ops

from .acmix import ConvPathMixin
from .san_attention import SAMBase, PairwiseSAM, PatchwiseSAM, sa_type_name

__all__ = ["ACmixSAM", "ACmixPairwiseSAM", "ACmixPatchwiseSAM"]


class _ACmixOnSAM(ConvPathMixin):
    """SAM + ACmix convolution path: ``rate1 * SAM(x) + rate2 * conv_path(phi(x), psi(x), beta(x))``; mixed into
    :class:`~convattn.layers.san_attention.PairwiseSAM` / :class:`~convattn.layers.san_attention.PatchwiseSAM`.

    Takes SAM's arguments (see :class:`~convattn.layers.san_attention.SAMBase`) plus:

    Args:
        head_dim: channels per head of the convolution path; must divide ``rel_planes`` and ``out_planes``.
            ``None`` = ``out_planes // share_planes`` (SAN's attention-weight channels).
        kernel_conv: odd kernel of ``dep_conv`` (ACmix: 3).
        depthwise_conv: True for the depth-wise (Ascend-legal) ``dep_conv``, False for the grouped one, None for
            the build target's form (see :class:`~convattn.layers.acmix.ACmixConvPath`).

    Parameter names: SAM's (``conv1/2/3``, ``conv_w.*``, ``conv_p``) plus ACmix's ``fc``, ``dep_conv``, ``rate1``,
    ``rate2``.
    """

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 3, stride: int = 1, dilation: int = 1, head_dim: Optional[int] = None,
                 kernel_conv: int = 3, depthwise_conv: Optional[bool] = None, **sam_kwargs) -> None:
        super().__init__(in_planes, rel_planes, out_planes, share_planes, kernel_size, stride, dilation,
                         **sam_kwargs)  # the SAM class this is mixed into
        head_dim = out_planes // share_planes if head_dim is None else head_dim
        if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 1 \
                or rel_planes % head_dim or out_planes % head_dim:
            raise ValueError(
                f"ACmixSAM: head_dim={head_dim!r} must be a positive integer dividing both rel_planes={rel_planes} "
                f"(phi/psi width) and out_planes={out_planes} (beta width), so that the three projections split into "
                f"whole heads; the default is out_planes // share_planes = {out_planes // share_planes}")
        self.qk_heads = rel_planes // head_dim
        self.v_heads = out_planes // head_dim
        maps = 2 * self.qk_heads + self.v_heads
        # fc and dep_conv become direct children (official ACmix names); `head` is beta's head count
        self.init_conv_path(self.v_heads, head_dim, out_planes, kernel_conv, stride, fc_bias=False,
                            depthwise_conv=depthwise_conv, fc_maps=maps)
        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")

    def extend_repr(self):
        return (SAMBase.extend_repr(self) + f", head_dim={self.head_dim}, "
                f"conv_maps={2 * self.qk_heads + self.v_heads}, kernel_conv={self.kernel_conv}, "
                f"depthwise_conv={self.depthwise_conv}")

    def construct(self, x):
        out_att, x1, x2, x3 = self.attend(x)
        b, h, wd = x3.shape[0], x3.shape[2], x3.shape[3]
        hd, hw = self.head_dim, h * wd
        f_all = ops.concat((x1.reshape(b, self.qk_heads, hd, hw), x2.reshape(b, self.qk_heads, hd, hw),
                            x3.reshape(b, self.v_heads, hd, hw)), 1)
        out_conv = self.conv_path(f_all, h, wd)
        return self.rate1 * out_att + self.rate2 * out_conv


class ACmixPairwiseSAM(_ACmixOnSAM, PairwiseSAM):
    """Pairwise SAM with the ACmix convolution path (arguments: see :class:`_ACmixOnSAM`)."""


class ACmixPatchwiseSAM(_ACmixOnSAM, PatchwiseSAM):
    """Patchwise SAM with the ACmix convolution path (arguments: see :class:`_ACmixOnSAM`)."""


class ACmixSAM:
    """SAM of attention type ``sa_type`` (``'pairwise'``/``0`` or ``'patchwise'``/``1``) with the ACmix
    convolution path: ``ACmixSAM(sa_type, ...)`` builds an :class:`ACmixPairwiseSAM` or :class:`ACmixPatchwiseSAM`
    (arguments: SAM's plus ``head_dim``, ``kernel_conv``, ``depthwise_conv``, see :class:`_ACmixOnSAM`). A class
    for the same reason as :class:`~convattn.layers.san_attention.SAM`: model code keeps it as ``sam_cls``."""

    def __new__(cls, sa_type, *args, **kwargs) -> SAMBase:
        return {"pairwise": ACmixPairwiseSAM, "patchwise": ACmixPatchwiseSAM}[sa_type_name(sa_type)](*args, **kwargs)
