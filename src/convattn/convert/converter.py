"""Official PyTorch checkpoint -> MindSpore: load into a network, or write a ``.ckpt``.

The same functions serve the command line (``python -m convattn.convert``) and the parity tests,
so what the tests prove is what users run.
"""
import json
import os
import tempfile
from typing import Dict, Mapping, Optional

import numpy as np
import mindspore as ms

from .mapping import ConversionError, map_state_dict
from .rules import get_rules

__all__ = ["read_official_state", "load_official_state", "map_official_state", "convert_checkpoint",
           "net_param_shapes", "CONVERTER_VERSION"]

# Bump when a rule or the mapping changes what a converted checkpoint holds: the weights cache
# (convattn.hub) keys every converted file by the source file's sha256 and this number, so a bump re-converts.
CONVERTER_VERSION = 1


def net_param_shapes(net) -> Dict[str, tuple]:
    return {p.name: tuple(p.shape) for p in net.get_parameters()}


def read_official_state(path: str) -> Dict[str, np.ndarray]:
    """Tensors of an official checkpoint: ``.pth``/``.pth.tar``/``.pt`` (read without PyTorch) or ``.npz``
    (arrays named by state_dict key, optionally under a ``state/`` prefix as in convattn's fixtures)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official checkpoint '{path}' does not exist")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            keys = [k for k in f.files if k.startswith("state/")] or list(f.files)
            return {k[len("state/"):] if k.startswith("state/") else k: f[k] for k in keys}
    from .pth_reader import read_state_dict

    state, _info = read_state_dict(path)
    return dict(state)


def map_official_state(net, state: Mapping[str, np.ndarray], rules=None, classifier=None, strict: bool = True):
    """An official state_dict (numpy arrays) as MindSpore parameters named and shaped for ``net`` (nothing loaded).

    ``rules`` is a :class:`~convattn.convert.rules.ConversionRules` or its name (default: the network's
    ``default_cfg['convert_rules']``); ``classifier``: parameter prefixes whose tensors are left out when their shape
    differs (another class count; default: the network's ``default_cfg['classifier']``). Raises
    :class:`ConversionError` with a full report of missing, unexpected and shape-mismatched keys when ``strict`` and
    anything else does not fit. Returns ``(tensors, report, dropped)`` (see :func:`~.mapping.map_state_dict`).
    """
    cfg = getattr(net, "default_cfg", {}) or {}
    if rules is None or isinstance(rules, str):
        rules = get_rules(rules if rules is not None else cfg.get("convert_rules"))
    if classifier is None and cfg.get("classifier"):
        classifier = [cfg["classifier"]]
    target = net_param_shapes(net)
    mapped, report, dropped = map_state_dict(state, target, rules, classifier=classifier)
    if strict and not report.ok:
        raise ConversionError(
            f"the checkpoint does not fit {cfg.get('architecture', net.__class__.__name__)}:\n{report.describe()}\n"
            "Check --model and --model_kwargs (depths, widths, num_classes) against how the checkpoint was trained."
        )
    params = {p.name: p for p in net.get_parameters()}
    # Tensor(..., dtype=) casts to the parameter's type (ms.dtype_to_nptype is deprecated and logs once per call)
    tensors = {k: ms.Parameter(ms.Tensor(v, dtype=params[k].dtype), name=k) for k, v in mapped.items()}
    return tensors, report, dropped


def load_official_state(net, state: Mapping[str, np.ndarray], rules=None, classifier=None, strict: bool = True) -> dict:
    """Map an official state_dict (numpy arrays) onto ``net`` and load it in place (:func:`map_official_state`;
    the same arguments)."""
    tensors, report, dropped = map_official_state(net, state, rules, classifier, strict)
    not_loaded, _ = ms.load_param_into_net(net, tensors, strict_load=True)
    return {"loaded": sorted(tensors), "not_loaded": not_loaded, "dropped": dropped,
            "skipped_classifier": report.skipped_classifier, "report": report}


def convert_checkpoint(src: str, dst: str, model: str, model_kwargs: Optional[dict] = None,
                       num_classes: Optional[int] = None, overwrite: bool = False, verify: bool = True) -> dict:
    """Convert an official checkpoint ``src`` for registered ``model`` into a MindSpore ``.ckpt`` at ``dst``.

    The class count is read from the checkpoint's classifier unless ``num_classes`` is given. Nothing is
    written unless every tensor maps; the file appears atomically (temporary file + rename), and (``verify``)
    the result is loaded back into a fresh network before this returns (a caller that loads it right away,
    as the weights cache does, passes ``verify=False``).
    """
    from ..models import create_model, get_model_cfg  # the converter CLI needs the target's parameter table

    from ..utils.cli import split_num_classes

    model_kwargs, num_classes = split_num_classes(model_kwargs or {}, num_classes)
    cfg = get_model_cfg(model)
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"'{dst}' already exists; choose another path or pass --overwrite")
    out_dir = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"output directory '{out_dir}' does not exist")
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(f"output directory '{out_dir}' is not writable")
    state = read_official_state(src)
    if num_classes is None:
        head = state.get(f"{cfg['classifier']}.weight") if cfg.get("classifier") else None
        num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else cfg["num_classes"]
    net = create_model(model, num_classes=num_classes, **model_kwargs)
    result = load_official_state(net, state)
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".ckpt", dir=out_dir)
    os.close(fd)
    try:
        ms.save_checkpoint(net, tmp)
        if verify:
            check = create_model(model, num_classes=num_classes, **model_kwargs)
            from ..models.helpers import load_checkpoint

            load_checkpoint(check, tmp, classifier=cfg.get("classifier"))
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    sidecar = {"model": model, "model_kwargs": model_kwargs, "num_classes": num_classes, "source": os.path.abspath(src),
               "tensors_loaded": len(result["loaded"]), "dropped": result["dropped"],
               "converter_version": CONVERTER_VERSION}
    return sidecar


def dumps(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=True)
