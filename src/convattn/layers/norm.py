"""Normalisation helpers (the channel-first LayerNorm is :class:`convattn.layers.helpers.ChannelLayerNorm`)."""
from mindspore import nn

__all__ = ["layer_norm"]


def layer_norm(dim: int, eps: float = 1e-5) -> nn.LayerNorm:
    """LayerNorm over the last axis with PyTorch's default eps 1e-5 (MindSpore's default is 1e-7); official
    models that use another eps (e.g. 1e-6) pass it."""
    return nn.LayerNorm((dim,), epsilon=eps)
