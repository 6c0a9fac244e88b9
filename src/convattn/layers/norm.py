"""Normalisation cells: LayerNorm over the last axis (:func:`layer_norm`), over the channels of an NCHW map
(:class:`ChannelLayerNorm`, :func:`channel_layer_norm`), and BatchNorm optionally followed by ReLU or a residual
add + ReLU (:class:`BatchNormAct2d`, :func:`batch_norm2d`).

Each factory builds the standard MindSpore cell, or, in a network built with the CPU backend
(:func:`convattn.layers.targets.cpu_cell`), its fused form from :mod:`convattn.cpu.norm`: the same cell type,
parameter names and values.
"""
from mindspore import nn, ops

from .targets import cpu_cell

__all__ = ["layer_norm", "ChannelLayerNorm", "channel_layer_norm", "BatchNormAct2d", "batch_norm2d", "BN_ACTS"]

BN_ACTS = (None, "relu", "add_relu")


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW map (PyTorch: ``flatten(2).transpose(1, 2)`` -> LayerNorm).

    A LayerNorm subclass, not a wrapper, so its parameters are named ``<cell>.gamma/beta`` like any LayerNorm."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__((channels,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, x):
        x = ops.transpose(x, (0, 2, 3, 1))
        x = super().construct(x)
        return ops.transpose(x, (0, 3, 1, 2))


def layer_norm(dim: int, eps: float = 1e-5) -> nn.LayerNorm:
    """LayerNorm over the last axis with PyTorch's default eps 1e-5 (MindSpore's default is 1e-7); official
    models that use another eps (e.g. 1e-6) pass it."""
    return cpu_cell("layer_norm", dim, eps) or nn.LayerNorm((dim,), epsilon=eps)


def channel_layer_norm(channels: int, eps: float = 1e-6) -> nn.LayerNorm:
    """:class:`ChannelLayerNorm` (or its fused CPU form, which normalises axis 1 in place of the transposes)."""
    return cpu_cell("channel_layer_norm", channels, eps) or ChannelLayerNorm(channels, eps)


class BatchNormAct2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` followed by ``act``: ``'relu'``, or ``'add_relu'`` (``construct(x, residual)`` =
    ReLU(BN(x) + residual), a ResNet block's end). Parameters as ``nn.BatchNorm2d``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9, act=None, **kwargs) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        if act not in BN_ACTS:
            raise ValueError(f"act must be one of {BN_ACTS}, got {act!r}")
        self.act = act

    def construct(self, x, residual=None):
        y = super().construct(x)
        if self.act == "add_relu":
            return ops.relu(y + residual)
        if self.act == "relu":
            return ops.relu(y)
        return y


def batch_norm2d(num_features: int, eps: float = 1e-5, momentum: float = 0.9, act=None, **kwargs) -> nn.BatchNorm2d:
    """A BatchNorm2d, optionally followed by ``act`` (``'relu'``, or ``'add_relu'``: ``bn(x, residual)`` =
    ReLU(BN(x) + residual)): ``nn.BatchNorm2d`` (:class:`BatchNormAct2d` with an ``act``), or the CPU backend's
    fused form (one kernel, activation included). Same parameters either way."""
    if act not in BN_ACTS:
        raise ValueError(f"act must be one of {BN_ACTS}, got {act!r}")
    fused = cpu_cell("batch_norm2d", num_features, eps, momentum, act=act, **kwargs)
    if fused is not None:
        return fused
    if act is not None:
        return BatchNormAct2d(num_features, eps, momentum, act=act, **kwargs)
    return nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, **kwargs)
