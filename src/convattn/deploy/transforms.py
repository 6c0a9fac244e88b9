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

from mindspore import nn

from ..layers import invalidate_graph_cache, set_export_safe, set_fused_kernels
from ..layers.acmix import ConvPathMixin
from ..layers.reparam import fold_bn_into_conv, fuse_conv_bn, switch_to_deploy
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
    report = {"switch_to_deploy": switch_to_deploy(net, skip_deployed=True), "export_safe": [], "replaced": [], "ascend_legal": [],
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


def ascend_grouped_conv_report(net: nn.Cell) -> List[str]:
    """Grouped convolutions that are not depth-wise (group != in == out channels): Ascend 310 kernels
    handle grouped convolution only in depth-wise form, so such cells need a rewrite for Ascend."""
    bad = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d) and cell.group > 1 and not (cell.group == cell.in_channels == cell.out_channels):
            bad.append(f"{name}: in={cell.in_channels} out={cell.out_channels} group={cell.group}")
    return bad
