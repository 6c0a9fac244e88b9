"""Small building blocks shared by every family: initialisers, activation, channel LayerNorm, input checks."""
import math
from typing import Tuple

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import initializer as init

__all__ = ["conv_fan_out_normal", "check_nchw", "GELU", "to_2tuple", "subsample2d", "Subsample2d", "subsample",
           "adopt_precision", "coordinate_grid", "unbind"]


def to_2tuple(v) -> Tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_fan_out_normal(out_channels: int, kernel_size, groups: int = 1) -> init.Initializer:
    """N(0, sqrt(2 / fan_out)) with fan_out = kh * kw * out / groups (the ResNet/VAN conv init)."""
    kh, kw = to_2tuple(kernel_size)
    fan_out = kh * kw * out_channels // groups
    return init.Normal(sigma=math.sqrt(2.0 / fan_out))


def GELU() -> nn.Cell:
    """Exact (erf) GELU, as PyTorch's default; MindSpore's ``nn.GELU`` defaults to the tanh approximation.

    ``nn.GELU(approximate=False)`` (its subclass :class:`~convattn.layers.lean_grad.LeanGELU`, whose backward keeps
    only the input); in an export-safe network the Erf-free
    :class:`~convattn.layers.export_gelu.ExportSafeGELU` (the ONNX exporter has no Erf); in a network built with the
    CPU backend its fused form (:class:`convattn.cpu.gelu.FusedGELU`, one vectorised kernel instead of
    MindSpore's scalar ``Erf``)."""
    from .targets import cpu_cell, current_form  # here: targets imports this module's neighbours

    if current_form().export_safe:
        from .export_gelu import ExportSafeGELU

        return ExportSafeGELU()
    from .lean_grad import LeanGELU

    return cpu_cell("gelu") or LeanGELU()


def check_nchw(x, in_chans: int, model: str):
    """Raise a clear error for an input that is not (N, in_chans, H, W); evaluated at compile time in GRAPH mode."""
    if x.ndim != 4:
        raise ValueError(f"{model} expects an NCHW image batch (4 dimensions), got {x.ndim} dimensions with shape {x.shape}")
    if x.shape[1] != in_chans and x.shape[3] == in_chans:  # channels last: the data's layout, not the model
        raise ValueError(
            f"{model} expects NCHW input with {in_chans} channels, got shape {x.shape}, which looks like NHWC "
            f"(channels last); transpose it first: x.transpose(0, 3, 1, 2)"
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{model} expects {in_chans} input channels (NCHW), got shape {x.shape}; "
            f"for {x.shape[1]}-channel images build the model with in_chans={x.shape[1]}"
        )
    return x


def adopt_precision(parent: nn.Cell, child: nn.Cell) -> nn.Cell:
    """Give ``child`` (a cell built after ``parent`` was set up) the mixed-precision flags ``parent`` carries
    (``to_float`` / AMP O2 flag every sub-cell, but only those that existed then); returns ``child``."""
    flags = {k: v for k, v in parent.get_flags().items() if k in ("fp16", "fp32", "bf16")}
    if flags:
        child.add_flags_recursive(**flags)
    return child


def coordinate_grid(h: int, w: int, dtype=ms.float32):
    """The 2-channel coordinate grid ``(1, 2, H, W)``: channel 0 = x, channel 1 = y, each linspace(-1, 1).

    Built as ``arange * step - 1`` (bit-identical to linspace in float32): ``LinSpace`` is neither exportable to
    ONNX nor usable under AMP O2 (its kernel takes float32/float64 only). ACmix's and SAN's position encodings
    read it."""
    step_w = 2.0 / (w - 1) if w > 1 else 0.0
    step_h = 2.0 / (h - 1) if h > 1 else 0.0
    loc_w = ops.arange(0, w, dtype=dtype) * step_w - 1.0
    loc_h = ops.arange(0, h, dtype=dtype) * step_h - 1.0
    grid_w = ops.broadcast_to(loc_w.reshape(1, 1, 1, w), (1, 1, h, w))
    grid_h = ops.broadcast_to(loc_h.reshape(1, 1, h, 1), (1, 1, h, w))
    return ops.concat((grid_w, grid_h), 1)


def subsample2d(x, stride: int):
    """``x[:, :, ::stride, ::stride]`` of an NCHW tensor without a strided slice.

    MindSpore 2.10's CPU ``StridedSliceGrad`` fails ("input memory out of bounds") for step slices of odd-sized
    or offset maps, so training cannot use them. Here the map is zero-padded to a multiple of ``stride``,
    split into ``stride x stride`` cells by a reshape, and the first element of each cell is kept: the same
    values (ceil(H / s) x ceil(W / s) of them) with a gradient built from reshapes and unit-step slices.
    """
    if stride == 1:
        return x
    n, c, h, w = x.shape
    ph, pw = (-h) % stride, (-w) % stride
    if ph:
        x = ops.concat((x, ops.zeros((n, c, ph, w), x.dtype)), 2)
    if pw:
        x = ops.concat((x, ops.zeros((n, c, h + ph, pw), x.dtype)), 3)
    ho, wo = (h + ph) // stride, (w + pw) // stride
    x = x.reshape(n, c, ho, stride, wo, stride)[:, :, :, 0:1, :, 0:1]
    return x.reshape(n, c, ho, wo)


class Subsample2d(nn.Cell):
    """:func:`subsample2d` as a cell."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = int(stride)

    def construct(self, x):
        return subsample2d(x, self.stride)


def subsample(stride: int) -> nn.Cell:
    """``x[:, :, ::stride, ::stride]`` as a cell: ``nn.Identity`` for stride 1, the CPU backend's kernel where the
    network being built uses it (stride 2), else :class:`Subsample2d`."""
    if stride == 1:
        return nn.Identity()
    from .targets import cpu_cell  # here: targets imports this module's neighbours

    fused = cpu_cell("subsample2d", stride)
    return fused if fused is not None else Subsample2d(stride)


def unbind(x):
    """``(x[0], x[1], ...)`` along axis 0 (q, k, v of a stacked projection) as one ``Split`` + squeezes: MindSpore
    2.10's CPU ``StridedSlice`` copies such a slice about 100x slower than ``Split`` does (and ``Unstack`` has no
    ONNX export)."""
    return tuple(ops.squeeze(t, 0) for t in ops.split(x, 1, axis=0))
