"""The optional CPU backend: fused ``ops.Custom`` kernels (C++, compiled on the host) for the operators MindSpore
2.10 runs slowly on the CPU, each with its gradient.

Layers and models are built from standard MindSpore cells; where a network is built for the CPU target with the
backend on (:func:`convattn.layers.targets.decide_form`), the cell factories of :mod:`convattn.layers` ask
:func:`build` (through :func:`convattn.layers.targets.cpu_cell`) for the fused form of a cell. Every fused cell is
the MindSpore cell it replaces (same type, parameter names, shapes and values: checkpoints are shared with the
standard form) and runs its kernel from construction on; nothing switches it back.

* :mod:`.runtime`: the one :class:`~convattn.cpu.runtime.KernelRuntime` per process (build, cache, load, init);
* :mod:`.primitives`: the ``ops.Custom`` primitives and the float32 cell;
* one module per operator family: :mod:`.window` (ACmix / SAN local windows), :mod:`.gelu`, :mod:`.norm`,
  :mod:`.linear`, :mod:`.conv`, :mod:`.depthwise`, :mod:`.pool`, :mod:`.attention`; their C++ in ``kernels/``.

``CONVATTN_FUSED_KERNELS=0`` turns the backend off; then nothing imports this package.
"""
from typing import Callable, Dict, Optional

from mindspore import nn

__all__ = ["FUSED_CELLS", "build"]


def _gemm() -> bool:
    from .runtime import runtime

    return runtime().gemm


def _gelu():
    from .gelu import FusedGELU

    return FusedGELU()


def _layer_norm(dim: int, eps: float):
    from .norm import FusedLayerNorm

    return FusedLayerNorm(dim, eps)


def _channel_layer_norm(channels: int, eps: float):
    from .norm import FusedChannelLayerNorm

    return FusedChannelLayerNorm(channels, eps)


def _batch_norm2d(num_features: int, eps: float, momentum: float, act=None, **kwargs):
    if kwargs.get("use_batch_statistics") is not None or kwargs.get("data_format", "NCHW") != "NCHW":
        return None
    from .norm import FusedBatchNorm2d

    return FusedBatchNorm2d(num_features, eps, momentum, act=act, **kwargs)


def _dense(in_channels: int, out_channels: int, has_bias: bool = True, **kwargs):
    gemm = _gemm()
    if kwargs.get("activation") is not None or not (has_bias or gemm):  # without a bias only the GEMM is faster
        return None
    from .linear import Linear

    return Linear(in_channels, out_channels, has_bias=has_bias, gemm=gemm, **kwargs)


def _conv2d(in_channels, out_channels, kernel_size, stride=1, pad_mode="same", padding=0, dilation=1, group=1,
            has_bias=False, **kwargs):
    if group != 1 or kwargs.get("data_format", "NCHW") != "NCHW" or not _gemm():
        return None
    from .conv import GemmConv2d

    return GemmConv2d(in_channels, out_channels, kernel_size, stride, pad_mode, padding, dilation, group, has_bias,
                      **kwargs)


def _depthwise_conv(dim: int, kernel_size: int, dilation: int = 1, **kwargs):
    if kernel_size % 2 != 1:
        return None
    from .depthwise import DepthwiseConv2d

    return DepthwiseConv2d(dim, kernel_size, dilation, **kwargs)


def _max_pool2d(kernel_size: int, stride: int, padding: int):
    from .pool import FusedMaxPool2d

    return FusedMaxPool2d(kernel_size, stride, padding)


def _softmax_attention(num_heads: int, scale: float, attn_drop: float = 0.0):
    if attn_drop > 0 or not _gemm():  # the kernel has no attention dropout
        return None
    from .attention import FusedSoftmaxAttention

    return FusedSoftmaxAttention(num_heads, scale)


def _acmix_window_attention(kernel_att: int, stride: int, padding: int):
    if stride not in (1, 2):
        return None
    from .window import FusedWindowAttention

    return FusedWindowAttention(kernel_att, stride, padding)


def _reflection_pad2d(padding: int):
    if padding < 1:
        return None
    from .pad import FusedReflectionPad2d

    return FusedReflectionPad2d(padding)


def _acmix_mix():
    from .acmix import FusedAcmixMix

    return FusedAcmixMix()


def _group_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int, group: int, has_bias: bool):
    if stride != 1 or has_bias or group < 2 or kernel_size % 2 != 1 or out_channels // group > 16:
        return None
    from .acmix import FusedGroupConv2d

    return FusedGroupConv2d(in_channels, out_channels, kernel_size, group)


def _subsample2d(stride: int):
    if stride != 2:
        return None
    from .acmix import FusedSubsample2

    return FusedSubsample2()


def _window(name: str) -> Callable:
    def make(*args, **kwargs):
        from . import window

        return getattr(window, name)(*args, **kwargs)

    return make


# kind -> builder(*args) -> a fused cell, or None where the backend does not serve these arguments
FUSED_CELLS: Dict[str, Callable[..., Optional[nn.Cell]]] = {
    "gelu": _gelu,
    "layer_norm": _layer_norm,
    "channel_layer_norm": _channel_layer_norm,
    "batch_norm2d": _batch_norm2d,
    "dense": _dense,
    "conv2d": _conv2d,
    "depthwise_conv": _depthwise_conv,
    "max_pool2d": _max_pool2d,
    "softmax_attention": _softmax_attention,
    "acmix_window_attention": _acmix_window_attention,
    "reflection_pad2d": _reflection_pad2d,
    "acmix_mix": _acmix_mix,
    "subsample2d": _subsample2d,
    "group_conv2d": _group_conv2d,
    "local_aggregate": _window("LocalAggregate"),
    "local_correlate": _window("LocalCorrelate"),
    "local_diff": _window("LocalDiff"),
    "tap_softmax": _window("TapSoftmax"),
    "pairwise_mlp": _window("PairwiseMlp"),
}


def build(kind: str, *args, **kwargs) -> Optional[nn.Cell]:
    """The fused cell ``kind`` (a key of :data:`FUSED_CELLS`) built with these arguments, or None where the
    backend does not serve them."""
    try:
        make = FUSED_CELLS[kind]
    except KeyError:
        raise KeyError(f"the CPU backend has no fused cell {kind!r}; known: {sorted(FUSED_CELLS)}") from None
    return make(*args, **kwargs)
