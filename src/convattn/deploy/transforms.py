"""Deploy-time transforms, applied to a trained network right before export.

One entry point, :func:`prepare_for_export`, so every model gets the same treatment and families that
land later need nothing beyond their own hooks:

1. ``switch_to_deploy()`` on every cell that defines it (inference-only re-parameterisations: BN folding,
   X-volution's structural re-parameterisation, ...). Cells are visited leaves-first.
2. for ONNX, every ``export_safe`` flag is switched on (:func:`convattn.layers.set_export_safe`): the
   slice-based formulations of unfold / reflection pad / roll that ``mindspore.onnx.export`` can express;
3. for ONNX, cells the exporter cannot express are replaced by numerically identical ones
   (``nn.GELU(approximate=False)`` -> :class:`~convattn.deploy.gelu.ExportSafeGELU`, no ``Erf``;
   ``nn.MaxPool2d(pad_mode='pad')`` -> :class:`~convattn.deploy.pool.ExportSafeMaxPool2d`, no
   ``MaxPool3DWithArgmax``): :data:`EXPORT_REPLACEMENTS`;
4. with ``ascend_legal=True``, every ACmix convolution path (:class:`~convattn.layers.acmix.ConvPathMixin`)
   is switched to its depth-wise form (Ascend runs grouped convolution only depth-wise), with its weight
   reshaped, so :func:`ascend_grouped_conv_report` comes out empty;
5. for both formats, layers running the fused CPU kernels (``ops.Custom``, a compiled library no exported
   graph can carry) switch back to their standard-op formulations (:func:`convattn.layers.set_fused_kernels`).

Training and benchmarking never call this; they keep the fast formulations.
"""
from typing import Callable, Dict, List

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn

from ..layers import invalidate_graph_cache, set_export_safe, set_fused_kernels
from ..layers.acmix import ConvPathMixin
from .gelu import ExportSafeGELU
from .pool import ExportSafeMaxPool2d, is_padded_maxpool

__all__ = ["prepare_for_export", "switch_to_deploy", "replace_cells", "fuse_conv_bn", "ascend_grouped_conv_report",
           "fold_bn_into_conv", "to_ascend_legal",
           "EXPORT_REPLACEMENTS"]


def _is_exact_gelu(cell) -> bool:
    return isinstance(cell, nn.GELU) and getattr(cell, "approximate", "tanh") == "none"


# (predicate, factory, description): cells ``mindspore.onnx.export`` cannot express -> exact equivalents.
EXPORT_REPLACEMENTS: List = [
    (_is_exact_gelu, lambda cell: ExportSafeGELU(), "nn.GELU(approximate=False) -> ExportSafeGELU (no Erf)"),
    (is_padded_maxpool, ExportSafeMaxPool2d.from_cell,
     "nn.MaxPool2d(pad_mode='pad') -> ExportSafeMaxPool2d (edge pad + valid MaxPool, no MaxPool3DWithArgmax)"),
]


def replace_cells(net: nn.Cell, predicate: Callable, factory: Callable) -> List[str]:
    """Replace every sub-cell ``c`` of ``net`` with ``predicate(c)`` by ``factory(c)``; returns their names."""
    replaced = []
    for parent_name, parent in list(net.cells_and_names()):
        for child_name, child in list(parent.name_cells().items()):
            if predicate(child):
                parent.insert_child_to_cell(child_name, factory(child))
                replaced.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return replaced


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


def to_ascend_legal(net: nn.Cell) -> List[str]:
    """Switch every ACmix convolution path in ``net`` to its depth-wise form (same function, weight reshaped
    ``(out, k*k, k, k) -> (out*k*k, 1, k, k)``); returns the switched cells' names."""
    done = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, ConvPathMixin) and not cell.depthwise_conv:
            cell.use_depthwise_conv()
            done.append(name or net.__class__.__name__)
    if done:
        invalidate_graph_cache(net)
    return done


def prepare_for_export(net: nn.Cell, onnx_safe: bool = True, ascend_legal: bool = False) -> Dict[str, list]:
    """Put a network in its deploy form in place; returns what was changed (recorded in the sidecar).

    ``onnx_safe=False`` (MINDIR) only runs the ``switch_to_deploy`` transforms: MindSpore's own runtime
    executes Im2Col, MirrorPad and Erf, so the fast formulations stay. ``onnx_safe=True`` also flips the
    ``export_safe`` flags and swaps cells the ONNX exporter lacks. ``ascend_legal=True`` also switches
    every ACmix convolution path to its depth-wise form (for Ascend; see :func:`to_ascend_legal`).
    Calling it twice is harmless.
    """
    net.set_train(False)
    report = {"switch_to_deploy": switch_to_deploy(net), "export_safe": [], "replaced": [], "ascend_legal": [],
              "fused_kernels_off": set_fused_kernels(net, False)}
    if ascend_legal:
        report["ascend_legal"] = [f"{n}: dep_conv -> depth-wise" for n in to_ascend_legal(net)]
    if onnx_safe:
        report["export_safe"] = [name for name, cell in net.cells_and_names()
                                 if isinstance(getattr(cell, "export_safe", None), bool)]
        set_export_safe(net, True)
        for predicate, factory, what in EXPORT_REPLACEMENTS:
            names = replace_cells(net, predicate, factory)
            report["replaced"] += [f"{n}: {what}" for n in names]
        if report["replaced"]:
            invalidate_graph_cache(net)  # a compiled GRAPH-mode net would otherwise keep the old sub-cells
    net.set_train(False)
    return report


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


def ascend_grouped_conv_report(net: nn.Cell) -> List[str]:
    """Grouped convolutions that are not depth-wise (group != in == out channels): Ascend 310 kernels
    handle grouped convolution only in depth-wise form, so such cells need a rewrite for Ascend."""
    bad = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d) and cell.group > 1 and not (cell.group == cell.in_channels == cell.out_channels):
            bad.append(f"{name}: in={cell.in_channels} out={cell.out_channels} group={cell.group}")
    return bad
