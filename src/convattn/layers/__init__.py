"""Operators (MindSpore cells), one file per idea. Layers know no network."""
from .drop_path import DropPath
from .helpers import GELU, ChannelLayerNorm, check_nchw, conv_fan_out_normal, to_2tuple
from .lka import LKA, LKAAttention
from .window_gather import LocalWindowGather, reflect_pad_slices, set_export_safe

__all__ = ["DropPath", "GELU", "ChannelLayerNorm", "check_nchw", "conv_fan_out_normal", "to_2tuple", "LKA", "LKAAttention",
           "LocalWindowGather", "reflect_pad_slices", "set_export_safe"]
from .acmix import ACmix, ACmixConvPath, ConvPathMixin  # noqa: E402  (ACmix family)

__all__ += ["ACmix", "ACmixConvPath", "ConvPathMixin"]
from .window_attention import WindowAttention, WindowAttentionACmix, cyclic_shift, window_partition, window_reverse  # noqa: E402

__all__ += ["WindowAttention", "WindowAttentionACmix", "cyclic_shift", "window_partition", "window_reverse"]

from .dynamic_attention import (AttentionActivation, DepthwiseAttentionCore, DynamicAttention,  # noqa: E402
                                DynamicAttentionCore, build_attention_core, check_attention_args)

__all__ += ["AttentionActivation", "DepthwiseAttentionCore", "DynamicAttention", "DynamicAttentionCore",
            "build_attention_core", "check_attention_args"]
