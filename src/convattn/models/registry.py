"""Model registry: ``register_model``, ``create_model``, ``list_models`` (timm / mindcv style).

Each family module defines ``default_cfgs`` (one dict per model name, built with :func:`model_cfg`)
*before* its ``@register_model`` factories, so the decorator can attach the config.
"""
import copy
import difflib
import fnmatch
import inspect
import sys
from typing import Callable, Dict, List, Optional, Sequence

__all__ = [
    "model_cfg", "register_model", "create_model", "list_models", "is_model", "get_model_cfg",
    "model_entrypoint", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_entrypoints: Dict[str, Callable] = {}
_default_cfgs: Dict[str, dict] = {}


def model_cfg(**kwargs) -> dict:
    """A per-model default config with timm's ``pretrained_cfg`` keys.

    Keys: ``url`` (released MindSpore checkpoint, if any), ``num_classes``, ``input_size`` (C, H, W),
    ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``first_conv``, ``classifier`` (parameter
    prefix of the head, dropped when the class count changes), ``paper``, ``upstream`` (official code),
    ``convert_rules`` (name of the weight-mapping rules in :mod:`convattn.convert.rules`) and
    ``top1`` (ImageNet-1k top-1 the paper/upstream reports, or None), ``test_kwargs`` (architecture
    overrides that make a small but structurally complete instance for fast tests, e.g. one block per
    stage) and ``test_input_size`` (the smallest input those tests use).
    """
    cfg = {
        "url": None,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": None,
        "classifier": "head",
        "paper": None,
        "upstream": None,
        "convert_rules": None,
        "top1": None,
        "test_kwargs": {},
        "test_input_size": (3, 64, 64),
    }
    unknown = set(kwargs) - set(cfg)
    if unknown:
        raise KeyError(f"unknown default-config keys {sorted(unknown)}; valid keys: {sorted(cfg)}")
    cfg.update(kwargs)
    return cfg


def register_model(fn: Callable) -> Callable:
    """Register a model factory under its function name and attach ``default_cfgs[name]`` of its module."""
    name = fn.__name__
    if name in _entrypoints:
        raise ValueError(f"model '{name}' is registered twice ({_entrypoints[name].__module__} and {fn.__module__})")
    module = sys.modules[fn.__module__]
    cfgs = getattr(module, "default_cfgs", {})
    if name not in cfgs:
        raise KeyError(f"{fn.__module__} registers '{name}' but defines no default_cfgs['{name}']")
    _entrypoints[name] = fn
    _default_cfgs[name] = cfgs[name]
    exported = getattr(module, "__all__", None)
    if isinstance(exported, list) and name not in exported:
        exported.append(name)
    return fn


def list_models(pattern: str = "*", exclude: Optional[str] = None) -> List[str]:
    """Sorted registered names matching a shell-style ``pattern`` (e.g. ``'van_*'``)."""
    names = [n for n in _entrypoints if fnmatch.fnmatch(n, pattern)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    return sorted(names)


def is_model(name: str) -> bool:
    return name in _entrypoints


def _unknown_model(name: str) -> ValueError:
    scored = sorted((-difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio(), n) for n in _entrypoints)
    close = [n for score, n in scored if -score >= 0.6][:6]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown model '{name}'.{hint} See convattn.list_models() for all {len(_entrypoints)} names.")


def model_entrypoint(name: str) -> Callable:
    if name not in _entrypoints:
        raise _unknown_model(name)
    return _entrypoints[name]


def get_model_cfg(name: str) -> dict:
    """A copy of the registered default config of ``name``."""
    if name not in _default_cfgs:
        raise _unknown_model(name)
    return copy.deepcopy(_default_cfgs[name])


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained: Optional[str] = None,
    in_chans: int = 3,
    drop_path_rate: Optional[float] = None,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    target: Optional[str] = None,
    **arch_kwargs,
):
    """Build a registered model.

    Args:
        name: a registered name (see :func:`list_models`).
        num_classes: classifier size.
        pretrained: path to a MindSpore ``.ckpt`` (e.g. written by ``python -m convattn.convert``). A
            checkpoint whose classifier has another class count loads everything else and says so.
        in_chans: input channels.
        drop_path_rate: stochastic-depth rate; ``None`` keeps the model's official default.
        features_only: return the stage feature maps (a tuple) instead of logits.
        out_indices: which stages ``features_only`` returns (default: all).
        target: ``'CPU'``, ``'GPU'`` or ``'Ascend'``: build the formulations that device runs (e.g. ACmix's
            depth-wise conv path on Ascend; see :mod:`convattn.layers.targets` and the README's target table).
            ``None``: the device MindSpore is set to. Any target builds and runs on any device (the forms are
            numerically identical), so the Ascend form can be tested on CPU; ``model.target`` records it.
            ``pretrained`` checkpoints of any form load into any other.
        **arch_kwargs: architecture overrides, e.g. ``depths=(1, 1, 1, 1)``, ``embed_dims=...``.
    """
    from ..layers.targets import build_target, resolve_target

    entry = model_entrypoint(name)
    target = resolve_target(target)  # an unknown target fails here, with the valid ones
    kwargs = dict(arch_kwargs)
    kwargs["num_classes"] = num_classes
    kwargs["in_chans"] = in_chans
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if features_only:
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices is only meaningful with features_only=True")
    try:
        with build_target(target):
            model = entry(**kwargs)
    except TypeError as exc:
        accepted = _accepted_kwargs(entry)
        bad = sorted(k for k in kwargs if accepted is not None and k not in accepted)
        if bad:
            raise TypeError(
                f"{name} does not accept {bad}; accepted architecture arguments: {sorted(accepted)}"
            ) from exc
        raise
    cfg = get_model_cfg(name)
    cfg["num_classes"] = num_classes
    cfg["architecture"] = name
    model.default_cfg = cfg
    model.target = target
    if pretrained:
        from .helpers import load_checkpoint

        load_checkpoint(model, pretrained, classifier=cfg["classifier"])
    return model


def _accepted_kwargs(fn: Callable):
    """Keyword names accepted by a factory (following ``**kwargs`` into the class it builds)."""
    params = inspect.signature(fn).parameters
    names = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    target = getattr(fn, "model_cls", None)
    if target is not None:
        names |= {n for n in inspect.signature(target.__init__).parameters if n != "self"}
    elif any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return names
