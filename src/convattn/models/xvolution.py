"""X-volution ResNets: X-volution replacing the 3x3 convolutions of chosen ResNet stages.

Refer to "X-volution: On the Unification of Convolution and Self-attention" (Chen, Wang, Ni; arXiv 2106.02253).
No code or weights were published; the operator is :class:`convattn.layers.XVolution` (design notes there).
The paper's classification experiments put X-volution into ResNet-34 and ResNet-50 and find stage 3 best
(+1.2 % / +0.9 % top-1); this is the default (``xvol_stages=(3,)``, stages numbered 1-4 = ``layer1..layer4``).
Every 3x3 conv of a chosen stage is replaced: ``conv2`` of each Bottleneck, ``conv1`` and ``conv2`` of each
BasicBlock. The block's own BatchNorm after the 3x3 position stays, as for any spatial layer of the shared ResNet.

``net.switch_to_deploy()`` converts every X-volution operator (BN folding + branch merge) in place; a deploy-form
network refuses training mode and a second switch.
"""
from typing import Optional, Sequence, Tuple, Union

from mindspore import nn

from ..layers import XVolution
from .builder import register_variants
from .registry import model_cfg, unreleased_weights
from .resnet import ResNet, conv3x3_layer

__all__ = ["XVolutionResNet", "xvolution_layer"]

_PAPER = "X-volution: On the Unification of Convolution and Self-attention (arXiv 2106.02253)"


def _cfg(**kwargs):
    return model_cfg(
        crop_pct=0.875, interpolation="bilinear", first_conv="conv1", classifier="fc", paper=_PAPER, upstream=None,
        convert_rules=None, top1=None, small_kwargs={"layers": (1, 1, 1, 1)}, small_input_size=(3, 64, 64), **kwargs,
    )


# The paper reports only deltas over its own ResNet baselines (+1.2 / +0.9 top-1); absolute numbers are not known.
_NONE = unreleased_weights("the X-volution paper released no code and no weights")
default_cfgs = {
    "xvolution_resnet34": _cfg(weights=_NONE),
    "xvolution_resnet50": _cfg(weights=_NONE),
}


def xvolution_layer(kernel_size: int = 3, attn: str = "pssa", directions=4, shift=1,
                    num_heads: Optional[int] = None, pssa_form: str = "attention", pssa_norm: str = "rms",
                    attn_bn_gamma: float = 1.0):
    """A spatial-layer factory for the shared ResNet: ``XVolution(in, width, kernel_size, stride, attn, ...)``."""

    def build(width: int, stride: int, dilation: int, in_channels: Optional[int] = None) -> nn.Cell:
        return XVolution(width if in_channels is None else in_channels, width, kernel_size, stride, attn=attn,
                         directions=directions, shift=shift, num_heads=num_heads, dilation=dilation,
                         pssa_form=pssa_form, pssa_norm=pssa_norm, attn_bn_gamma=attn_bn_gamma)

    return build


class XVolutionResNet(ResNet):
    """The shared :class:`~convattn.models.resnet.ResNet` with X-volution in the stages ``xvol_stages``.

    Args:
        xvol_stages: stages (1-4) whose 3x3 convs become X-volution (default ``(3,)``, the paper's best).
        attn: ``'pssa'`` (X-volution) or ``'sa'`` (X-volution (SA), global self-attention).
        pssa_form: ``'attention'`` (default: the paper's operator, the plain conv's cost plus a few MACs per
            pixel) or ``'dense'`` (the first version: a dense k x k conv over the D shifted products, (1 + D) x
            the conv's cost), see :class:`~convattn.layers.XVolution`.
        pssa_norm: ``'rms'`` (default: PSSA's products take channel-RMS-normalised operands, which bounds the
            dynamic weights; a fresh network's eval-mode logits stay those of a ResNet) or ``'none'`` (unbounded:
            a fresh ResNet-34 gives NaN at 224^2 in eval mode), see :class:`~convattn.layers.XVolution`.
        attn_bn_gamma: initial scale of every attention branch's BatchNorm (1 default; 0 starts as the ResNet).
        kernel_size, directions, shift, num_heads: passed to :class:`~convattn.layers.XVolution`.
        Everything else: :class:`~convattn.models.resnet.ResNet` (``layers``, ``block``, ``num_classes``, ...).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), block: str = "bottleneck",
                 xvol_stages: Sequence[int] = (3,), attn: str = "pssa", kernel_size: int = 3,
                 directions: Union[int, Sequence[Tuple[int, int]]] = 4, shift: Union[int, Sequence[int]] = 1,
                 num_heads: Optional[int] = None, pssa_form: str = "attention", pssa_norm: str = "rms",
                 attn_bn_gamma: float = 1.0, **kwargs) -> None:
        stages = tuple(sorted({int(s) for s in xvol_stages}))
        if not stages or any(s not in (1, 2, 3, 4) for s in stages):
            raise ValueError(f"xvol_stages must be a non-empty subset of stages 1, 2, 3, 4 (layer1..layer4), "
                             f"got {tuple(xvol_stages)}")
        if "spatial_layer" in kwargs:
            raise TypeError("XVolutionResNet builds its own spatial layers; use xvol_stages / attn / kernel_size")
        xv = xvolution_layer(kernel_size, attn, directions, shift, num_heads, pssa_form, pssa_norm, attn_bn_gamma)
        factories = tuple(xv if s in stages else conv3x3_layer for s in (1, 2, 3, 4))
        super().__init__(layers=layers, spatial_layer=factories, block=block, **kwargs)
        for _, cell in self.cells_and_names():       # undo the ResNet's Kaiming re-draw of the coefficient convs
            if isinstance(cell, XVolution):
                cell.init_attention()
        self.xvol_stages = stages
        self.attn = attn
        self.pssa_form = pssa_form if attn == "pssa" else None
        self.pssa_norm = pssa_norm if attn == "pssa" else None
        self.deployed = False

    def switch_to_deploy(self) -> "XVolutionResNet":
        """Convert every X-volution operator to its deploy form (in place) and put the network in eval mode.

        Operators already switched (e.g. by a generic leaves-first hook) are left as they are; switching the
        network itself twice raises.
        """
        if self.deployed:
            raise RuntimeError(f"{type(self).__name__}.switch_to_deploy() was already called: the network is in "
                               "deploy form")
        for _, cell in self.cells_and_names():
            if isinstance(cell, XVolution) and not cell.deployed:
                cell.switch_to_deploy()
        self.deployed = True
        super().set_train(False)
        return self

    def set_train(self, mode: bool = True):
        if mode and getattr(self, "deployed", False):
            raise RuntimeError(f"{type(self).__name__} is in deploy form (BatchNorms folded, X-volution branches "
                               "merged) and cannot be trained; train the training-form network and switch afterwards")
        return super().set_train(mode)


VARIANTS = {
    # ResNet-34 (BasicBlock) with X-volution in stage 3 (both 3x3 convs of each block)
    "xvolution_resnet34": dict(layers=(3, 4, 6, 3), block="basic", xvol_stages=(3,), attn="pssa"),
    # ResNet-50 (torchvision v1.5 Bottleneck) with X-volution as the 3x3 conv of every stage-3 block
    "xvolution_resnet50": dict(layers=(3, 4, 6, 3), block="bottleneck", xvol_stages=(3,), attn="pssa"),
}

register_variants(__name__, XVolutionResNet, VARIANTS, default_cfgs)
