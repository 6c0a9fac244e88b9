"""The local-window gather shared by ACmix's sliding-window attention and SAN's aggregation.

``LocalWindowGather(k, stride, dilation, padding)`` maps ``(N, C, H, W)`` to ``(N, C, k*k, Ho, Wo)``:
for output position (h, w) and tap t = kh*k + kw it holds ``x[:, :, -p + h*s + kh*d, -p + w*s + kw*d]``,
out-of-range indices reflected without repeating the border (PyTorch ``'reflect'``, the official
``F.pad(mode='reflect')`` / SAN ``*_refpad`` kernels) or zero-filled. The tap order equals ``F.unfold``.

Two formulations, numerically identical (``tests/test_window_gather.py`` proves it):

* ``export_safe=False`` (training and benchmarking): ``nn.ReflectionPad2d`` + ``ops.unfold`` (Im2Col).
* ``export_safe=True`` (ONNX): padding and gathering from slices + concat, because MindSpore 2.10's ONNX
  exporter has no Im2Col, MirrorPad or PadV3 (../shared/design/mindspore-2.10-notes.md §1.2).

``export_safe=None`` takes the form of the network being built (:func:`convattn.layers.targets.current_form`).
"""
from typing import Optional

from mindspore import nn, ops

from .pad import reflection_pad2d
from .targets import current_form

__all__ = ["LocalWindowGather", "reflect_pad_slices", "window_output_size"]


def window_output_size(size: int, kernel_size: int, stride: int, dilation: int, padding: int) -> int:
    return (size + 2 * padding - (dilation * (kernel_size - 1) + 1)) // stride + 1


def reflect_pad_slices(x, pad: int):
    """Reflection padding of the last two axes built from 1-wide slices and concat (exportable)."""
    if pad == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    top = tuple(x[:, :, pad - i:pad - i + 1] for i in range(pad))
    bottom = tuple(x[:, :, h - 2 - i:h - 1 - i] for i in range(pad))
    x = ops.concat(top + (x,) + bottom, 2)
    left = tuple(x[:, :, :, pad - i:pad - i + 1] for i in range(pad))
    right = tuple(x[:, :, :, w - 2 - i:w - 1 - i] for i in range(pad))
    return ops.concat(left + (x,) + right, 3)


def _zero_pad_slices(x, pad: int):
    if pad == 0:
        return x
    n, c, h, w = x.shape
    zr = ops.zeros((n, c, pad, w), x.dtype)
    x = ops.concat((zr, x, zr), 2)
    zc = ops.zeros((n, c, h + 2 * pad, pad), x.dtype)
    return ops.concat((zc, x, zc), 3)


class LocalWindowGather(nn.Cell):
    """Gather every k x k neighbourhood: ``(N, C, H, W) -> (N, C, k*k, Ho, Wo)``.

    Args:
        kernel_size: window side k (odd or even; ACmix and SAN use odd).
        stride: output stride s.
        dilation: spacing d between taps.
        padding: border p (default ``d * (k - 1) // 2``, which keeps H at stride 1).
        pad_mode: ``'reflect'`` (ACmix, SAN) or ``'zeros'``.
        export_safe: use the slice formulation (ONNX-exportable, slower); None: the form being built.
    """

    def __init__(self, kernel_size: int, stride: int = 1, dilation: int = 1, padding: Optional[int] = None,
                 pad_mode: str = "reflect", export_safe: Optional[bool] = None) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError(f"kernel_size, stride and dilation must be >= 1, got {kernel_size}, {stride}, {dilation}")
        if pad_mode not in ("reflect", "zeros"):
            raise ValueError(f"pad_mode must be 'reflect' or 'zeros', got '{pad_mode}'")
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else int(padding)
        self.pad_mode = pad_mode
        self.export_safe = current_form().export_safe if export_safe is None else bool(export_safe)
        self.offsets = [(i * dilation, j * dilation) for i in range(kernel_size) for j in range(kernel_size)]
        p = self.padding
        self.reflect = reflection_pad2d(p)  # the CPU backend's row-copying kernel where the network uses it

    def extend_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, "
                f"padding={self.padding}, pad_mode={self.pad_mode}, export_safe={self.export_safe}")

    def construct(self, x):
        n, c, h, w = x.shape
        k, s, d, p = self.kernel_size, self.stride, self.dilation, self.padding
        if self.pad_mode == "reflect" and (p >= h or p >= w):
            raise ValueError(f"reflection padding {p} needs a feature map larger than {p} on each side, got {h}x{w}")
        ho = (h + 2 * p - (d * (k - 1) + 1)) // s + 1
        wo = (w + 2 * p - (d * (k - 1) + 1)) // s + 1
        if self.export_safe:
            xp = reflect_pad_slices(x, p) if self.pad_mode == "reflect" else _zero_pad_slices(x, p)
            taps = tuple(ops.expand_dims(xp[:, :, o[0]:o[0] + s * (ho - 1) + 1:s, o[1]:o[1] + s * (wo - 1) + 1:s], 2)
                         for o in self.offsets)
            return ops.concat(taps, 2)
        if self.pad_mode == "reflect":
            x = self.reflect(x)
            cols = ops.unfold(x, kernel_size=k, dilation=d, padding=0, stride=s)
        else:
            cols = ops.unfold(x, kernel_size=k, dilation=d, padding=p, stride=s)
        return cols.reshape(n, c, k * k, ho, wo)
