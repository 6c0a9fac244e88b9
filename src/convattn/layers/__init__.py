"""Operators (MindSpore cells), one file per idea. Layers know no network."""
from .drop_path import DropPath
from .helpers import GELU, ChannelLayerNorm, check_nchw, conv_fan_out_normal, to_2tuple
from .lka import LKA, LKAAttention

__all__ = ["DropPath", "GELU", "ChannelLayerNorm", "check_nchw", "conv_fan_out_normal", "to_2tuple", "LKA", "LKAAttention"]
