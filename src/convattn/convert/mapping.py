"""Map an official PyTorch state_dict onto a convattn network's parameter table (pure data mapping).

Generic renames (every family): BatchNorm ``running_mean/running_var`` -> ``moving_mean/moving_variance``;
norm ``weight/bias`` -> ``gamma/beta`` when the network names them so; ``num_batches_tracked`` dropped.
Conv and Linear tensors keep PyTorch's layouts in MindSpore, so they pass unchanged. Family-specific
renames, dropped buffers and layout transforms come from :mod:`convattn.convert.rules`.
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..utils.state import StateReport, compare_shapes
from .rules import ConversionRules, GENERIC
from ..utils.errors import UserError

__all__ = ["map_key", "map_state_dict", "ConversionError"]

_BN_BUFFERS = {"running_mean": "moving_mean", "running_var": "moving_variance"}
_NORM_PARAMS = {"weight": "gamma", "bias": "beta"}
_ALWAYS_DROP = re.compile(r"(^|\.)num_batches_tracked$")


class ConversionError(UserError, ValueError):
    """The official checkpoint does not fit the requested convattn model."""


def map_key(key: str, target: Mapping[str, Tuple[int, ...]], rules: ConversionRules = GENERIC) -> str:
    """The convattn name of one official key (after family renames and generic norm renames)."""
    for pattern, repl in rules.renames:
        key = re.sub(pattern, repl, key)
    prefix, _, leaf = key.rpartition(".")
    if leaf in _BN_BUFFERS:
        return f"{prefix}.{_BN_BUFFERS[leaf]}" if prefix else _BN_BUFFERS[leaf]
    if leaf in _NORM_PARAMS and key not in target:
        alt = f"{prefix}.{_NORM_PARAMS[leaf]}" if prefix else _NORM_PARAMS[leaf]
        if alt in target:
            return alt
    return key


def map_state_dict(
    state: Mapping[str, np.ndarray],
    target: Mapping[str, Tuple[int, ...]],
    rules: ConversionRules = GENERIC,
    classifier: Optional[Sequence[str]] = None,
) -> Tuple[Dict[str, np.ndarray], StateReport, List[str]]:
    """Rename and reshape ``state`` (official keys) for a network whose parameters are ``target`` (name -> shape).

    Returns ``(mapped, report, dropped)``: ``mapped`` holds only tensors the network has, ``report`` lists
    missing / unexpected / shape-mismatched names (in convattn names), ``dropped`` the official keys
    skipped on purpose (``num_batches_tracked`` and the family's recomputed buffers). Entries under a
    ``classifier`` prefix whose shape differs go to ``report.skipped_classifier`` instead of failing.
    """
    drop = [re.compile(p) for p in rules.drop]
    transforms = [(re.compile(p), fn) for p, fn in rules.transforms]
    mapped: Dict[str, np.ndarray] = {}
    dropped: List[str] = []
    for key, value in state.items():
        if _ALWAYS_DROP.search(key) or any(p.search(key) for p in drop):
            dropped.append(key)
            continue
        name = map_key(key, target, rules)
        if name in mapped:
            raise ConversionError(f"two official keys map to '{name}' (second: '{key}'); the conversion rules are ambiguous")
        arr = np.asarray(value)
        if name in target:
            for pattern, fn in transforms:
                if pattern.search(name):
                    arr = fn(arr, tuple(target[name]))
        mapped[name] = arr
    report = compare_shapes(target, {k: v.shape for k, v in mapped.items()}, classifier=classifier or [])
    excluded = set(report.skipped_classifier) | {m[0] for m in report.mismatched}
    kept = {k: v for k, v in mapped.items() if k in target and k not in excluded}
    return kept, report, dropped
