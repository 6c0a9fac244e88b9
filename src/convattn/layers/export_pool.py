"""An exact padded max-pool built only from operators MindSpore 2.10's ONNX exporter supports.

``nn.MaxPool2d(pad_mode='pad', padding=p)`` (the ResNet stem) lowers to ``MaxPool3DWithArgmax``, which
``mindspore.onnx.export`` refuses ("Can not find key MaxPool3DWithArgmax in convert map"). A max-pool with
implicit padding ignores the padded positions (it pads with -inf). :class:`ExportSafeMaxPool2d` pads by
*edge replication* instead (slices + concat) and runs a ``'valid'`` ``MaxPool`` (ONNX ``MaxPool``):
with ``padding <= kernel // 2`` (the only paddings MindSpore accepts) every window that covers a padded
row/column also covers the edge row/column it copies, so the copies add no new value to any window and the
maximum is the same for every input (negative maps, -inf, NaN included) -- unlike a zero pad, which is exact
only after a ReLU. A constant -inf band would need ``zeros_like``/``fill``, which the exporter folds into a
constant of the export batch size (wrong for a dynamic batch); the slices follow the input's shape.
"""
from mindspore import nn, ops

from .helpers import to_2tuple

__all__ = ["ExportSafeMaxPool2d", "is_padded_maxpool"]


def is_padded_maxpool(cell) -> bool:
    """An ``nn.MaxPool2d`` with ``pad_mode='pad'`` (MaxPool3DWithArgmax) that :class:`ExportSafeMaxPool2d` can
    replace: NCHW, no dilation, floor mode, no indices."""
    if not isinstance(cell, nn.MaxPool2d) or not getattr(cell, "use_pad", False):
        return False
    attrs = cell.max_pool.attrs
    return (not cell.return_indices and not attrs.get("ceil_mode", False)
            and tuple(attrs.get("dilation", (1, 1, 1)))[-2:] == (1, 1))


class ExportSafeMaxPool2d(nn.Cell):
    """Max-pool with explicit edge-replicated padding ``(top=bottom=ph, left=right=pw)`` + 'valid' pooling;
    equal to ``nn.MaxPool2d(kernel_size, stride, pad_mode='pad', padding=(ph, pw))``."""

    def __init__(self, kernel_size, stride, padding) -> None:
        super().__init__()
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride)
        self.ph, self.pw = to_2tuple(padding)
        kh, kw = self.kernel_size
        if not (0 <= self.ph <= kh // 2 and 0 <= self.pw <= kw // 2):
            raise ValueError(f"padding {(self.ph, self.pw)} must be at most half the kernel {self.kernel_size} "
                             "(a window made only of padding has no defined maximum)")
        self.pool = nn.MaxPool2d(kernel_size=self.kernel_size, stride=self.stride, pad_mode="valid")

    @classmethod
    def from_cell(cls, cell: nn.MaxPool2d) -> "ExportSafeMaxPool2d":
        if not is_padded_maxpool(cell):
            raise TypeError(f"ExportSafeMaxPool2d replaces nn.MaxPool2d(pad_mode='pad') without dilation, ceil_mode "
                            f"or indices, got {cell}")
        return cls(cell.kernel_size, cell.stride, tuple(cell.padding)[-2:])

    def extend_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={(self.ph, self.pw)}"

    def construct(self, x):
        h, w = x.shape[2], x.shape[3]
        if self.ph > 0:
            top, bottom = x[:, :, 0:1, :], x[:, :, h - 1:h, :]
            x = ops.concat((top,) * self.ph + (x,) + (bottom,) * self.ph, 2)
        if self.pw > 0:
            left, right = x[:, :, :, 0:1], x[:, :, :, w - 1:w]
            x = ops.concat((left,) * self.pw + (x,) + (right,) * self.pw, 3)
        return self.pool(x)
