"""Per-family weight-name rules: the one place that says how official PyTorch keys become convattn keys.

Most families need no rule beyond the generic renames in :mod:`convattn.convert.mapping`, because
convattn names its cells exactly as the official modules. A family adds an entry here when its
official layout differs: key renames, buffers that the MindSpore network recomputes (dropped), and
layout transforms keyed by the MindSpore parameter name.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np

__all__ = ["ConversionRules", "RULES", "get_rules", "register_rules"]

Transform = Callable[[np.ndarray, Tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class ConversionRules:
    """How one family's official state_dict maps onto convattn parameters.

    Attributes:
        name: the rules' name (a model's ``default_cfg['convert_rules']``).
        renames: ``(regex, replacement)`` pairs applied in order to each official key before the generic renames.
        drop: regexes of official keys that carry no parameter in convattn (buffers it recomputes).
        transforms: ``(regex on the convattn key, fn(array, target_shape) -> array)`` for layout changes.
    """

    name: str
    renames: Tuple[Tuple[str, str], ...] = ()
    drop: Tuple[str, ...] = ()
    transforms: Tuple[Tuple[str, Transform], ...] = field(default=())


RULES: Dict[str, ConversionRules] = {}


def register_rules(rules: ConversionRules) -> ConversionRules:
    if rules.name in RULES:
        raise ValueError(f"conversion rules '{rules.name}' defined twice")
    RULES[rules.name] = rules
    return rules


def get_rules(name) -> ConversionRules:
    if name is None:
        return GENERIC
    if name not in RULES:
        raise KeyError(f"no conversion rules named '{name}'; known: {sorted(RULES)}")
    return RULES[name]


GENERIC = ConversionRules("generic")

# VAN: convattn keeps the official module names (patch_embed{i}, block{i}.{j}, attn.spatial_gating_unit.*,
# mlp.dwconv.dwconv, norm{i}, head); BatchNorm/LayerNorm renames are generic.
register_rules(ConversionRules("van"))


def _dep_conv_to_target(arr: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """ACmix ``dep_conv`` (grouped, as the official code stores it) in the shape of the form being loaded, by the
    one form mapping (:func:`convattn.layers.targets.map_between_forms`); other shapes go to the shape report."""
    from ..layers.targets import map_between_forms

    mapped = map_between_forms("dep_conv.weight", arr, tuple(shape))
    return arr if mapped is None else mapped


# ACmix (LeapLabTHU/ACmix): convattn keeps the official names (conv1/2/3, conv_p, fc, dep_conv, rate1/2, and the
# torchvision ResNet / Swin names around them). The depth-wise (Ascend) form of dep_conv stores the grouped weight
# (out, 9, 3, 3) as (out*9, 1, 3, 3): a reshape. Swin buffers (relative_position_index, attn_mask) are recomputed.
_ACMIX_DEP_CONV = ((r"(^|\.)dep_conv\.weight$", _dep_conv_to_target),)
register_rules(ConversionRules("acmix", transforms=_ACMIX_DEP_CONV))
register_rules(ConversionRules(
    "acmix_swin",
    drop=(r"(^|\.)relative_position_index$", r"(^|\.)attn_mask$"),
    transforms=_ACMIX_DEP_CONV,
))

# DeiT / ViT: convattn keeps timm's VisionTransformer names (patch_embed.proj, cls_token, pos_embed,
# blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, head); LayerNorm renames are generic.
register_rules(ConversionRules("deit"))

# SAN: convattn keeps the official module names (conv_in, bn_in, conv{i}, bn{i}, layer{i}.{k}.{bn1, sam.conv1/2/3,
# sam.conv_w.{0,2,3,5}, sam.conv_p, bn2, conv}, fc); DataParallel's `module.` prefix is stripped by the reader.
register_rules(ConversionRules("san"))
