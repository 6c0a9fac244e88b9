"""Operators (MindSpore cells), one file per idea. Layers know no network."""
from .drop_path import DropPath
from .helpers import GELU, check_nchw, conv_fan_out_normal, subsample2d, to_2tuple
from .init import trunc_normal, trunc_normal_dense
from .norm import BatchNormAct2d, ChannelLayerNorm, batch_norm2d, channel_layer_norm, layer_norm
from .linear import dense
from .depthwise import depthwise_conv
from .conv import conv2d
from .pool import max_pool2d
from .export_gelu import ExportSafeGELU
from .export_pool import ExportSafeMaxPool2d
from .mlp import Mlp
from .softmax_attention import SoftmaxAttention
from .patch_embed import PatchEmbed
from .lka import LKA, LKAAttention
from .window_gather import LocalWindowGather, reflect_pad_slices
from .targets import (TARGETS, BuildForm, build_target, cpu_cell, current_form, decide_form, map_between_forms,
                      resolve_target, select_form)
from .acmix import ACmix, ACmixConvPath, ConvPathMixin
from .dynamic_attention import (AttentionActivation, DepthwiseAttentionCore, DynamicAttention, DynamicAttentionCore,
                                build_attention_core, check_attention_args)
from .window_attention import WindowAttention, WindowAttentionACmix, cyclic_shift, window_partition, window_reverse
from .san_attention import SAM
from .acmix_san import ACmixSAM
from .xvolution import XVolution, pssa_directions, shift2d
from .reparam import is_deployed, switch_to_deploy

__all__ = [
    "DropPath", "GELU", "ChannelLayerNorm", "channel_layer_norm", "check_nchw", "conv_fan_out_normal", "subsample2d",
    "to_2tuple", "trunc_normal", "trunc_normal_dense", "layer_norm", "batch_norm2d", "BatchNormAct2d", "dense",
    "depthwise_conv", "conv2d", "max_pool2d", "ExportSafeGELU", "ExportSafeMaxPool2d", "Mlp", "SoftmaxAttention",
    "PatchEmbed", "LKA", "LKAAttention",
    "LocalWindowGather", "reflect_pad_slices",
    "TARGETS", "BuildForm", "build_target", "cpu_cell", "current_form", "decide_form", "map_between_forms",
    "resolve_target", "select_form",
    "ACmix", "ACmixConvPath", "ConvPathMixin",
    "AttentionActivation", "DepthwiseAttentionCore", "DynamicAttention", "DynamicAttentionCore", "build_attention_core",
    "check_attention_args",
    "WindowAttention", "WindowAttentionACmix", "cyclic_shift", "window_partition", "window_reverse",
    "SAM",
    "ACmixSAM",
    "XVolution", "is_deployed", "pssa_directions", "shift2d", "switch_to_deploy",
]
