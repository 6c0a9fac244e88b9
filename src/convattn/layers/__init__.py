"""Operators (MindSpore cells), one file per idea. Layers know no network."""
from .drop_path import DropPath
from .helpers import GELU, ChannelLayerNorm, check_nchw, conv_fan_out_normal, to_2tuple
from .lka import LKA, LKAAttention
from .window_gather import LocalWindowGather, reflect_pad_slices, set_export_safe

__all__ = ["DropPath", "GELU", "ChannelLayerNorm", "check_nchw", "conv_fan_out_normal", "to_2tuple", "LKA", "LKAAttention",
           "LocalWindowGather", "reflect_pad_slices", "set_export_safe"]
from .san_attention import SAM  # noqa: E402

__all__ += ["SAM"]
