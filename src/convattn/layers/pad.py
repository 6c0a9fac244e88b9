"""Reflection padding: :func:`reflection_pad2d` builds ``nn.ReflectionPad2d``, or in a network built with the CPU
backend its row-copying kernel (:class:`convattn.cpu.pad.FusedReflectionPad2d`; no parameters either way)."""
from mindspore import nn

from .targets import cpu_cell

__all__ = ["reflection_pad2d"]


def reflection_pad2d(padding: int) -> nn.Cell:
    """The same reflection padding on all four sides of an NCHW map (``nn.Identity`` for 0)."""
    if padding <= 0:
        return nn.Identity()
    fused = cpu_cell("reflection_pad2d", padding)
    return fused if fused is not None else nn.ReflectionPad2d((padding,) * 4)
