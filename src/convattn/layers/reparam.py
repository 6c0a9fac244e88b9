"""Inference-time re-parameterisation shared by layers, models and tools: BatchNorm folding into the preceding
convolution, and the network-level switch that calls every cell's ``switch_to_deploy()``.

Lives in ``layers`` so that models (VAN's patch embedding folds its BatchNorm) and the engine (``eval.py --deploy``)
use it without importing ``deploy``; :mod:`convattn.deploy` re-exports it for export.
"""
from typing import List

import numpy as np
from mindspore import Parameter, Tensor, nn

from .helpers import invalidate_graph_cache

__all__ = ["switch_to_deploy", "fuse_conv_bn", "fold_bn_into_conv"]


def _already_deployed(cell) -> bool:
    return getattr(cell, "deploy", None) is True or getattr(cell, "deployed", None) is True


def switch_to_deploy(net: nn.Cell) -> List[str]:
    """Call ``switch_to_deploy()`` on every cell of ``net`` that has it (children before parents), skipping
    cells already in deploy form (their own second switch raises, by design), then force a GRAPH recompile."""
    cells = [(name, cell) for name, cell in net.cells_and_names() if callable(getattr(cell, "switch_to_deploy", None))]
    done = []
    for name, cell in reversed(cells):
        if _already_deployed(cell):
            continue
        cell.switch_to_deploy()
        done.append(name or net.__class__.__name__)
    invalidate_graph_cache(net)
    return done


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A ``Conv2d`` (with bias) equal to ``bn(conv(x))`` in eval mode; parameter names keep ``conv``'s prefix."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fuse_conv_bn needs nn.Conv2d and nn.BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}")
    w = conv.weight.asnumpy().astype(np.float64)
    b = conv.bias.asnumpy().astype(np.float64) if conv.bias is not None else np.zeros(w.shape[0])
    gamma, beta = bn.gamma.asnumpy().astype(np.float64), bn.beta.asnumpy().astype(np.float64)
    mean, var = bn.moving_mean.asnumpy().astype(np.float64), bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, pad_mode=conv.pad_mode,
                      padding=conv.padding, dilation=conv.dilation, group=conv.group, has_bias=True)
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
