"""Deploy-time helpers: the Ascend grouped-convolution report, and the re-parameterisation primitives re-exported.

A network to export is *built* in the form it is exported in (``convattn.create_model(..., export_safe=...,
cpu_backend=False, deploy='auto')``, :func:`convattn.deploy.export_model`): standard cells only (the CPU
backend's ``ops.Custom`` kernels need a compiled library no exported graph can carry), the ONNX-expressible
operators where the format needs them, the target's formulations (Ascend: every ACmix conv path depth-wise), the
deploy re-parameterisation made right after the build. Nothing here changes a built network's form.
"""
from typing import List

from mindspore import nn

from ..layers.reparam import fold_bn_into_conv, fuse_conv_bn, switch_to_deploy

__all__ = ["switch_to_deploy", "fuse_conv_bn", "ascend_grouped_conv_report", "fold_bn_into_conv"]


def ascend_grouped_conv_report(net: nn.Cell) -> List[str]:
    """Grouped convolutions that are not depth-wise (group != in == out channels): Ascend kernels handle grouped
    convolution only in depth-wise form, so a network with any cannot run there."""
    bad = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d) and cell.group > 1 and not (cell.group == cell.in_channels == cell.out_channels):
            bad.append(f"{name}: in={cell.in_channels} out={cell.out_channels} group={cell.group}")
    return bad
