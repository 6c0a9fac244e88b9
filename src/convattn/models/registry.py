"""Model registry: names -> factories and default configs (``register_model``, ``list_models``, ``get_model_cfg``).

Families register through :func:`convattn.models.builder.register_variants` (a variant table per family), which
calls :func:`register_model` with each variant's config; :func:`convattn.models.builder.create_model` builds.
A hand-written factory can still be registered with ``@register_model`` after its module's ``default_cfgs``.
"""
import copy
import difflib
import fnmatch
import inspect
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "model_cfg", "register_model", "list_models", "is_model", "get_model_cfg", "model_entrypoint",
    "accepted_kwargs", "unknown_model_error", "small_instance_kwargs", "IMAGENET_MEAN", "IMAGENET_STD",
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
    ``top1`` (ImageNet-1k top-1 the paper/upstream reports, or None), ``small_kwargs`` (architecture
    overrides that make a small but structurally complete instance -- every stage and every kind of block, e.g.
    one block per stage -- used by the tests and by the tools that tabulate every model quickly: the Ascend audit,
    ``scripts/export_table.py``, ``scripts/target_table.py``) and ``small_input_size`` (the smallest input such
    an instance takes); read them through :func:`small_instance_kwargs`.
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
        "small_kwargs": {},
        "small_input_size": (3, 64, 64),
    }
    unknown = set(kwargs) - set(cfg)
    if unknown:
        raise KeyError(f"unknown default-config keys {sorted(unknown)}; valid keys: {sorted(cfg)}")
    cfg.update(kwargs)
    return cfg


def register_model(fn: Callable, cfg: Optional[dict] = None) -> Callable:
    """Register a model factory under its function name with ``cfg`` (default: ``default_cfgs[name]`` of its
    module, which must then be defined before the factory)."""
    name = fn.__name__
    if name in _entrypoints:
        raise ValueError(f"model '{name}' is registered twice ({_entrypoints[name].__module__} and {fn.__module__})")
    module = sys.modules[fn.__module__]
    if cfg is None:
        cfgs = getattr(module, "default_cfgs", {})
        if name not in cfgs:
            raise KeyError(f"{fn.__module__} registers '{name}' but defines no default_cfgs['{name}']")
        cfg = cfgs[name]
    _entrypoints[name] = fn
    _default_cfgs[name] = cfg
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


def unknown_model_error(name: str) -> ValueError:
    """The error for an unregistered ``name``, suggesting close registered names."""
    scored = sorted((-difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio(), n) for n in _entrypoints)
    close = [n for score, n in scored if -score >= 0.6][:6]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown model '{name}'.{hint} See convattn.list_models() for all {len(_entrypoints)} names.")


def model_entrypoint(name: str) -> Callable:
    if name not in _entrypoints:
        raise unknown_model_error(name)
    return _entrypoints[name]


def get_model_cfg(name: str) -> dict:
    """A copy of the registered default config of ``name``."""
    if name not in _default_cfgs:
        raise unknown_model_error(name)
    return copy.deepcopy(_default_cfgs[name])


def _keyword_names(fn: Callable) -> set:
    params = inspect.signature(fn).parameters
    return {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"}


def accepted_kwargs(fn: Callable) -> Optional[set]:
    """Keyword names a factory accepts, following ``**kwargs`` into the network class it builds (``fn.model_cls``)
    and the family's build function (``fn.build``, see :func:`convattn.models.builder.register_variants`);
    None when a factory takes ``**kwargs`` without saying where they go."""
    names = _keyword_names(fn)
    target = getattr(fn, "model_cls", None)
    if target is not None:
        names |= {n for n in inspect.signature(target.__init__).parameters if n != "self"}
        build = getattr(fn, "build", None)
        if build is not None and build is not target:
            names |= _keyword_names(build)
    elif any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        return None
    return names


def small_instance_kwargs(name: str, full: bool = False, input_size: Union[None, int, Sequence[int]] = None,
                          **overrides) -> Tuple[dict, Tuple[int, int, int]]:
    """``(kwargs, input_size)`` of the small instance of model ``name``: the one definition every test and tool
    builds a small model from (``create_model(name, **kwargs)`` on inputs ``(batch,) + input_size``).

    ``kwargs`` are the ``small_kwargs`` of its default config updated with ``overrides`` (any ``create_model``
    arguments, checked where the model is built; e.g. the Ascend audit's CI instances, smaller still).
    ``input_size`` is ``(C, H, W)``: its ``small_input_size``, or ``input_size`` when given (an int: a square RGB
    input; ``(H, W)``; or ``(C, H, W)``). ``full=True``: the registered architecture at its ``input_size``
    (``({}, input_size)``, overrides applied)."""
    cfg = get_model_cfg(name)
    kwargs = dict({} if full else cfg["small_kwargs"], **overrides)
    size = cfg["input_size"] if full else cfg["small_input_size"]
    if input_size is not None:
        size = (3, int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(input_size)
        size = size if len(size) == 3 else (3,) + tuple(size)
        if len(size) != 3:
            raise ValueError(f"input_size must be a side, (H, W) or (C, H, W); got {input_size!r}")
    return kwargs, tuple(int(v) for v in size)
