"""Stochastic depth (drop path), per sample, as in timm's DropPath."""
import mindspore as ms
from mindspore import nn, ops

__all__ = ["DropPath"]


class DropPath(nn.Cell):
    """Zero a whole residual branch per sample with probability ``drop_prob`` during training and scale
    the kept samples by ``1 / (1 - drop_prob)``; the identity in eval mode or when ``drop_prob == 0``."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)
        self.keep_prob = 1.0 - self.drop_prob
        self.scale_by_keep = scale_by_keep

    def construct(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(ops.rand(shape, dtype=x.dtype) + self.keep_prob)
        if self.scale_by_keep:
            mask = mask / self.keep_prob
        return x * mask

    def extend_repr(self):
        return f"drop_prob={self.drop_prob}"
