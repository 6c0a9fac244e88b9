"""Model registry: names -> factories and default configs (``register_model``, ``list_models``, ``get_model_cfg``).

Families register through :func:`convattn.models.builder.register_variants` (a variant table per family), which
calls :func:`register_model` with each variant's config; :func:`convattn.models.builder.create_model` builds.
A hand-written factory can still be registered with ``@register_model`` after its module's ``default_cfgs``.
"""
import copy
import difflib
import fnmatch
import inspect
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "model_cfg", "register_model", "list_models", "is_model", "get_model_cfg", "model_entrypoint",
    "accepted_kwargs", "unknown_model_error", "small_instance_kwargs", "IMAGENET_MEAN", "IMAGENET_STD",
    "official_weights", "manual_weights", "unreleased_weights", "weights_entry", "format_top1", "WEIGHTS_STATUSES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# what a model's ``weights`` entry says about its official ImageNet-1k weights
WEIGHTS_STATUSES = {
    "download": "a direct HTTPS download: create_model(name, pretrained=True) fetches, verifies and converts it",
    "manual": "released behind a link a script cannot follow (a Google Drive folder): download by hand, then convert",
    "unreleased": "never released: pretrained=True is refused",
}
_HEX = re.compile(r"^[0-9a-f]+$")

_entrypoints: Dict[str, Callable] = {}
_default_cfgs: Dict[str, dict] = {}


def model_cfg(**kwargs) -> dict:
    """A per-model default config with timm's ``pretrained_cfg`` keys.

    Keys: ``url`` (released MindSpore checkpoint, if any), ``num_classes``, ``input_size`` (C, H, W),
    ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``first_conv``, ``classifier`` (parameter
    prefix of the head, dropped when the class count changes), ``paper``, ``upstream`` (official code),
    ``convert_rules`` (name of the weight-mapping rules in :mod:`convattn.convert.rules`) and
    ``top1`` (ImageNet-1k top-1 the paper/upstream reports, or None), ``weights`` (the official weights: see
    :func:`official_weights`, :func:`manual_weights`, :func:`unreleased_weights`; ``create_model(name,
    pretrained=True)`` reads it, and it gets the config's preprocessing as ``weights['preprocessing']``),
    ``small_kwargs`` (architecture overrides that make a small but structurally complete instance -- every stage
    and every kind of block, e.g. one block per stage -- used by the tests and by the tools that tabulate every model quickly: the Ascend audit,
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
        "weights": None,
        "small_kwargs": {},
        "small_input_size": (3, 64, 64),
    }
    unknown = set(kwargs) - set(cfg)
    if unknown:
        raise KeyError(f"unknown default-config keys {sorted(unknown)}; valid keys: {sorted(cfg)}")
    cfg.update(kwargs)
    if cfg["weights"] is not None:
        weights = dict(cfg["weights"])
        if weights.get("status") not in WEIGHTS_STATUSES:
            raise ValueError(f"weights entry without a valid status: {weights!r}; build it with official_weights(), "
                             "manual_weights() or unreleased_weights()")
        if weights["status"] != "unreleased":  # how the released file was evaluated: the model's eval transform
            weights["preprocessing"] = {k: cfg[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std")}
        cfg["weights"] = weights
    return cfg


def official_weights(file: str, urls, *, top1: float, container: str, licence: str, sha256: Optional[str] = None,
                     sha256_prefix: Optional[str] = None, hash_note: Optional[str] = None,
                     size: Optional[int] = None, note: Optional[str] = None) -> dict:
    """A ``weights`` entry for official weights a script can download.

    Args:
        file: the file name (as published; the cache and ``CONVATTN_WEIGHTS_MIRROR`` use it).
        urls: download URLs, the official one first, mirrors after (tried in order).
        top1: the official ImageNet-1k top-1 of this file.
        container: how the file holds the tensors (e.g. ``"{'model': state_dict}"``); the reader finds them anyway.
        licence: the upstream licence note.
        sha256: the full sha256 where it is published; else ``sha256_prefix``: the 8 hex digits the file name
            carries (torch.hub's convention); else neither, and ``hash_note`` says so.
        size: the published size in bytes, where known.
    """
    urls = tuple(urls)
    if not file or not urls or not all(u.startswith("https://") for u in urls):
        raise ValueError(f"official_weights({file!r}): give the file name and at least one https URL, got {urls}")
    if sha256 is not None and (len(sha256) != 64 or not _HEX.match(sha256)):
        raise ValueError(f"{file}: sha256 must be 64 lower-case hex digits, got {sha256!r}")
    if sha256_prefix is not None and (not 8 <= len(sha256_prefix) < 64 or not _HEX.match(sha256_prefix)
                                      or sha256_prefix not in file):
        raise ValueError(f"{file}: sha256_prefix must be the hex digits the file name carries, got {sha256_prefix!r}")
    if sha256 is not None and sha256_prefix is not None:
        raise ValueError(f"{file}: give the full sha256 or the file name's prefix, not both")
    if hash_note is None:
        hash_note = ("full sha256, as published" if sha256 else
                     "8-hex sha256 prefix from the file name (torch.hub convention)" if sha256_prefix else
                     "none published: the bytes are not checked against a hash (the converter still checks every "
                     "tensor name and shape)")
    return {"status": "download", "file": file, "urls": urls, "sha256": sha256, "sha256_prefix": sha256_prefix,
            "hash_note": hash_note, "size": size, "container": container, "top1": top1, "licence": licence,
            "manual": None, "note": note}


def manual_weights(link: str, *, top1: float, container: str, licence: str, note: Optional[str] = None) -> dict:
    """A ``weights`` entry for official weights behind a link a script cannot follow (a Google Drive or Baidu
    folder): ``create_model(pretrained=True)`` refuses with the link and the commands that convert the download."""
    return {"status": "manual", "file": None, "urls": (), "sha256": None, "sha256_prefix": None,
            "hash_note": "none published", "size": None, "container": container, "top1": top1, "licence": licence,
            "manual": link, "note": note}


def unreleased_weights(reason: str) -> dict:
    """A ``weights`` entry saying the official weights were never released (``reason``: by whom, where it says so)."""
    return {"status": "unreleased", "reason": reason}


def format_top1(top1: float) -> str:
    """An official top-1 as published: one decimal, two where the source gives two (torchvision's 76.13)."""
    return f"{top1:.1f}" if round(top1, 1) == top1 else f"{top1:.2f}"


def weights_entry(name: str) -> dict:
    """The ``weights`` entry of registered model ``name`` (a copy); a model without one counts as unreleased."""
    weights = get_model_cfg(name).get("weights")
    return weights if weights is not None else unreleased_weights("no official weights are recorded for this model")


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


def list_models(pattern: str = "*", exclude: Optional[str] = None, pretrained: bool = False) -> List[str]:
    """Sorted registered names matching a shell-style ``pattern`` (e.g. ``'van_*'``); ``pretrained=True``: only the
    models whose official weights were released (``weights`` status 'download', which ``create_model(name,
    pretrained=True)`` fetches, or 'manual', which it explains how to download)."""
    names = [n for n in _entrypoints if fnmatch.fnmatch(n, pattern)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    if pretrained:
        names = [n for n in names if weights_entry(n)["status"] in ("download", "manual")]
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
