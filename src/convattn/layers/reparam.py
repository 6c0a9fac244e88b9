"""Inference-time re-parameterisation shared by layers, models and tools: BatchNorm folding into the preceding
convolution, and the network-level switch that calls every cell's ``switch_to_deploy()``.

The deploy contract (one for every family): a cell with an inference-only re-parameterisation (BatchNorm folding,
merged branches) defines ``switch_to_deploy()``, which converts it in place, and a boolean ``deployed`` that the
switch sets; switching a cell twice raises. Networks are switched with :func:`switch_to_deploy` below (children
before parents), and :func:`is_deployed` tells whether a network is in deploy form. The one entry point is
``create_model(..., deploy=True)``: ``eval.py --deploy``, export and the speed harness (``model@deploy``) build
their deploy-form networks through it.

Lives in ``layers`` so that models (VAN's patch embedding folds its BatchNorm) and the engine (``eval.py --deploy``)
use it without importing ``deploy``; :mod:`convattn.deploy` re-exports it for export.
"""
from typing import List

import numpy as np
from mindspore import Parameter, Tensor, nn


__all__ = ["switch_to_deploy", "is_deployed", "fuse_conv_bn", "fold_bn_into_conv"]


def _reparam_cells(net: nn.Cell):
    return [(name, cell) for name, cell in net.cells_and_names() if callable(getattr(cell, "switch_to_deploy", None))]


def is_deployed(net: nn.Cell) -> bool:
    """True when ``net`` has re-parameterisable cells and every one of them is in deploy form."""
    cells = _reparam_cells(net)
    return bool(cells) and all(getattr(cell, "deployed", False) is True for _, cell in cells)


def switch_to_deploy(net: nn.Cell, skip_deployed: bool = False) -> List[str]:
    """Switch every re-parameterisable cell of ``net`` to its deploy form (children before parents, cells already
    switched are left as they are) and put ``net`` in eval mode; returns the switched cells' names (empty when
    ``net`` has nothing to re-parameterise). :func:`convattn.create_model` (``deploy=True``) is the one caller:
    it switches the network it has just built, before anything ran it.

    A network already wholly in deploy form raises (a second switch is a mistake that would otherwise pass
    silently), unless ``skip_deployed=True`` (export takes a network in either form).
    """
    cells = _reparam_cells(net)
    if cells and is_deployed(net) and not skip_deployed:
        raise RuntimeError(f"{type(net).__name__} is already in deploy form: switch_to_deploy() was called before")
    done = []
    for name, cell in reversed(cells):
        if getattr(cell, "deployed", False) is True:
            continue
        cell.switch_to_deploy()
        done.append(name or net.__class__.__name__)
    net.set_train(False)
    return done


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A ``Conv2d`` (with bias) equal to ``bn(conv(x))`` in eval mode; parameter names keep ``conv``'s prefix."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fuse_conv_bn needs nn.Conv2d and nn.BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}")
    if getattr(bn, "act", None) is not None:
        raise ValueError(f"fuse_conv_bn: this BatchNorm2d applies act={bn.act!r} after normalising, which a "
                         "convolution cannot hold; fold only a BatchNorm built without an activation")
    w = conv.weight.asnumpy().astype(np.float64)
    b = conv.bias.asnumpy().astype(np.float64) if conv.bias is not None else np.zeros(w.shape[0])
    gamma, beta = bn.gamma.asnumpy().astype(np.float64), bn.beta.asnumpy().astype(np.float64)
    mean, var = bn.moving_mean.asnumpy().astype(np.float64), bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    args = (conv.in_channels, conv.out_channels, conv.kernel_size)
    kwargs = dict(stride=conv.stride, pad_mode=conv.pad_mode, padding=conv.padding, dilation=conv.dilation,
                  group=conv.group, has_bias=True)
    fused = type(conv)(*args, **kwargs)  # nn.Conv2d, or the CPU backend's GemmConv2d (same signature)
    dtype = conv.weight.dtype
    prefix = conv.weight.name[:-len("weight")] if conv.weight.name.endswith("weight") else conv.weight.name + "."
    fused.weight = Parameter(Tensor((w * scale.reshape(-1, 1, 1, 1)).astype(np.float32), dtype), name=prefix + "weight")
    fused.bias = Parameter(Tensor(((b - mean) * scale + beta).astype(np.float32), dtype), name=prefix + "bias")
    return fused


def fold_bn_into_conv(parent: nn.Cell, conv_attr: str, bn_attr: str) -> bool:
    """In ``parent``, replace ``conv_attr`` (a Conv2d followed by the BatchNorm ``bn_attr``) with the fused
    conv and ``bn_attr`` with ``nn.Identity``; parameter names stay what they were (``<prefix>.weight/bias``).
    Returns False (and changes nothing) when ``bn_attr`` is no longer a BatchNorm (already folded)."""
    conv, bn = getattr(parent, conv_attr), getattr(parent, bn_attr)
    if not isinstance(bn, nn.BatchNorm2d):
        return False
    old = conv.weight.name
    prefix = old[:-len("weight")] if old.endswith("weight") else old + "."
    setattr(parent, conv_attr, fuse_conv_bn(conv, bn))
    setattr(parent, bn_attr, nn.Identity())
    fused = getattr(parent, conv_attr)
    fused.weight.name = prefix + "weight"  # assignment re-prefixes relative to parent; restore the full path
    fused.bias.name = prefix + "bias"
    return True
