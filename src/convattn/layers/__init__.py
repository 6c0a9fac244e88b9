"""Operators (MindSpore cells), one file per idea. Layers know no network."""
from .drop_path import DropPath
from .helpers import GELU, check_nchw, conv_fan_out_normal, invalidate_graph_cache, subsample2d, to_2tuple
from .init import trunc_normal, trunc_normal_dense
from .norm import ChannelLayerNorm, FusedBatchNorm2d, FusedLayerNorm, batch_norm2d, layer_norm
from .linear import Linear, dense
from .depthwise import DepthwiseConv2d, depthwise_conv
from .conv import GemmConv2d, conv2d
from .pool import FusedMaxPool2d, max_pool2d
from .mlp import Mlp
from .softmax_attention import SoftmaxAttention
from .patch_embed import PatchEmbed
from .lka import LKA, LKAAttention
from .window_gather import LocalWindowGather, reflect_pad_slices, set_export_safe
from .fused_window import LocalAggregate, LocalCorrelate, fused_kernels_available, set_fused_kernels
from .targets import TARGETS, build_target, map_between_forms, resolve_target, select_form
from .acmix import ACmix, ACmixConvPath, ConvPathMixin
from .dynamic_attention import (AttentionActivation, DepthwiseAttentionCore, DynamicAttention, DynamicAttentionCore,
                                build_attention_core, check_attention_args)
from .window_attention import WindowAttention, WindowAttentionACmix, cyclic_shift, window_partition, window_reverse
from .san_attention import SAM
from .acmix_san import ACmixSAM
from .xvolution import XVolution, pssa_directions, shift2d
from .reparam import is_deployed, switch_to_deploy

__all__ = [
    "DropPath", "GELU", "ChannelLayerNorm", "check_nchw", "conv_fan_out_normal", "invalidate_graph_cache", "subsample2d", "to_2tuple",
    "trunc_normal", "trunc_normal_dense", "layer_norm", "FusedLayerNorm", "batch_norm2d", "FusedBatchNorm2d", "Linear", "dense", "DepthwiseConv2d", "depthwise_conv", "GemmConv2d", "conv2d", "FusedMaxPool2d", "max_pool2d", "Mlp", "SoftmaxAttention", "PatchEmbed",
    "LKA", "LKAAttention",
    "LocalWindowGather", "reflect_pad_slices", "set_export_safe",
    "LocalAggregate", "LocalCorrelate", "fused_kernels_available", "set_fused_kernels",
    "TARGETS", "build_target", "map_between_forms", "resolve_target", "select_form",
    "ACmix", "ACmixConvPath", "ConvPathMixin",
    "AttentionActivation", "DepthwiseAttentionCore", "DynamicAttention", "DynamicAttentionCore", "build_attention_core",
    "check_attention_args",
    "WindowAttention", "WindowAttentionACmix", "cyclic_shift", "window_partition", "window_reverse",
    "SAM",
    "ACmixSAM",
    "XVolution", "is_deployed", "pssa_directions", "shift2d", "switch_to_deploy",
]
