"""Padded max pooling (the ResNet stem): :func:`max_pool2d` builds ``nn.MaxPool2d(pad_mode='pad')``; in an
export-safe network :class:`~convattn.layers.export_pool.ExportSafeMaxPool2d` (no ``MaxPool3DWithArgmax``, which
the ONNX exporter lacks); in a network built with the CPU backend its fused form
(:class:`convattn.cpu.pool.FusedMaxPool2d`). All equal."""
from mindspore import nn

from .export_pool import ExportSafeMaxPool2d
from .targets import cpu_cell, current_form

__all__ = ["max_pool2d"]


def max_pool2d(kernel_size: int, stride: int, padding: int) -> nn.Cell:
    """``nn.MaxPool2d(kernel_size, stride, pad_mode='pad', padding=padding)`` in the form being built."""
    if current_form().export_safe:
        return ExportSafeMaxPool2d(kernel_size, stride, padding)
    return cpu_cell("max_pool2d", kernel_size, stride, padding) or \
        nn.MaxPool2d(kernel_size=kernel_size, stride=stride, pad_mode="pad", padding=padding)
