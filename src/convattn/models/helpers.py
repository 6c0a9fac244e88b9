"""Loading MindSpore checkpoints into registered models, whatever formulation wrote them.

One loader for every path that reads weights (``create_model(pretrained=)``, ``scripts/eval.py``, ``--resume``,
export): a checkpoint written by one formulation of a network (e.g. the grouped CPU/GPU form of ACmix's conv path)
loads into any other (the depth-wise Ascend form), each form-dependent tensor converted by
:func:`convattn.layers.targets.map_between_forms`.
"""
import logging
import os
from typing import Dict, List, Optional, Union

import mindspore as ms
import numpy as np

from ..layers.targets import map_between_forms
from ..utils.state import compare_shapes
from ..utils.errors import UserError

__all__ = ["load_checkpoint", "read_checkpoint", "map_checkpoint_forms", "CheckpointMismatchError",
           "UnreadableCheckpointError", "WeightsError", "TRAINING_STATE_PREFIXES", "OFFICIAL_SUFFIXES",
           "is_official_checkpoint"]

# file names create_model(pretrained=...) reads as official PyTorch checkpoints (converted on the fly); anything else
# is a MindSpore .ckpt
OFFICIAL_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar", ".npz")


def is_official_checkpoint(path) -> bool:
    """Whether ``path`` names an official PyTorch checkpoint (by its suffix: :data:`OFFICIAL_SUFFIXES`)."""
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(OFFICIAL_SUFFIXES)

_logger = logging.getLogger(__name__)

# Entries a training checkpoint carries beside the weights (optimizer moments, schedules, counters).
TRAINING_STATE_PREFIXES = (
    "moments.", "accum.", "adam_m.", "adam_v.", "moment1.", "moment2.", "ema.", "global_step",
    "learning_rate", "beta1_power", "beta2_power", "epoch_num", "step_num", "scale_sense",
    "current_iterator_step", "last_overflow_iterator_step", "loss_scale", "train_state.", "momentum",
    "train.",  # the engine's position entries (train.epoch, train.step, train.global_step, train.best_acc)
)


class CheckpointMismatchError(UserError, ValueError):
    """The checkpoint does not fit the network (another variant or another model)."""


class UnreadableCheckpointError(CheckpointMismatchError):
    """The file is not a MindSpore checkpoint at all (junk, truncated, another format)."""

    def __str__(self) -> str:  # the message with its hint, for callers that print str(exc)
        return f"{self.args[0]}. {self.hint[0].upper()}{self.hint[1:]}" if self.hint else super().__str__()


class WeightsError(UserError, RuntimeError):
    """Official pretrained weights could not be provided (never released, manual-only, offline with an empty cache,
    a failed download, a wrong hash); the message says why and what to do. Raised by :mod:`convattn.hub`."""


def read_checkpoint(path: str) -> Dict:
    """``mindspore.load_checkpoint(path)`` with errors that say what to do (a missing file, a non-MindSpore file)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (pass the path to a MindSpore .ckpt file)")
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for non-ckpt files
        raise UnreadableCheckpointError(
            f"'{path}' is not a readable MindSpore checkpoint ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            hint="for an official PyTorch checkpoint, pass it with its .pth/.pth.tar name (create_model converts it "
                 "on the fly) or convert it first: python -m convattn.convert --model NAME SRC DST") from exc


def map_checkpoint_forms(data: Dict, *cells) -> List[str]:
    """Convert, in place, every entry of ``data`` whose shape is another formulation's shape of the parameter of
    the same name in ``cells`` (a network, and for a training checkpoint its optimizer and EMA: moments and
    averages are named after the weight). Returns the converted names; anything else is left for the shape check."""
    shapes = {}
    for cell in cells:
        if cell is not None:
            shapes.update((p.name, tuple(p.shape)) for p in cell.get_parameters())
    mapped = []
    for name, value in list(data.items()):
        if name not in shapes or not hasattr(value, "shape") or tuple(value.shape) == shapes[name]:
            continue
        new = map_between_forms(name, value.asnumpy(), shapes[name])
        if new is not None:
            data[name] = ms.Parameter(ms.Tensor(np.ascontiguousarray(new), value.dtype), name=name,
                                      requires_grad=getattr(value, "requires_grad", True))
            mapped.append(name)
    return mapped


def load_checkpoint(net, checkpoint: Union[str, Dict], classifier: Optional[str] = "head", strict: bool = True,
                    use_ema: bool = False, source: Optional[str] = None) -> dict:
    """Load a MindSpore ``.ckpt`` (a path, or the dict :func:`read_checkpoint` returns) into ``net``.

    Any formulation's checkpoint loads into any other's network (:func:`map_checkpoint_forms`). Every network
    parameter must be present with the same shape, except the classifier: when its class count differs (or the
    network has no head, e.g. ``features_only``), the classifier is skipped and the rest loads, with a log
    message saying so; ``classifier=None`` requires it too. Optimizer/training entries are ignored;
    ``use_ema=True`` loads a training checkpoint's EMA weights (``ema.<name>``) where it has them. ``source``
    names a dict checkpoint in messages.
    Returns ``{'loaded': n, 'skipped_classifier': [...], 'ignored': [...], 'form_mapped': [...], 'ema': bool}``.
    """
    path = checkpoint if isinstance(checkpoint, str) else (source or "<checkpoint>")
    raw = read_checkpoint(checkpoint) if isinstance(checkpoint, str) else dict(checkpoint)
    ema = use_ema and any(k.startswith("ema.") and k != "ema.updates" for k in raw)
    if ema:
        raw = {k[4:]: v for k, v in raw.items() if k.startswith("ema.") and k != "ema.updates"}
    ignored = [k for k in raw if k.startswith(TRAINING_STATE_PREFIXES)]
    weights = {k: v for k, v in raw.items() if k not in set(ignored)}
    mapped = map_checkpoint_forms(weights, net)
    target = {p.name: tuple(p.shape) for p in net.get_parameters()}
    source = {k: tuple(v.shape) for k, v in weights.items()}
    rep = compare_shapes(target, source, classifier=[classifier] if classifier else [])
    if strict and not rep.ok:
        arch = getattr(net, "default_cfg", {}).get("architecture", net.__class__.__name__)
        raise CheckpointMismatchError(
            f"checkpoint '{path}' does not match {arch}:\n{rep.describe()}\n"
            "Is it a checkpoint of another variant, or built with other architecture arguments? "
            "Pass the same name and arguments it was trained/converted with."
        )
    to_load = {k: v for k, v in weights.items() if k in target and k not in set(rep.skipped_classifier)}
    not_loaded, _ = ms.load_param_into_net(net, to_load, strict_load=True)
    remaining = [n for n in not_loaded if n not in set(rep.skipped_classifier)]
    if strict and remaining:
        raise CheckpointMismatchError(f"parameters not loaded from '{path}': {remaining[:12]}")
    if rep.skipped_classifier:
        _logger.warning(
            "Loaded '%s' except the classifier (%s): its class count differs from the network's, "
            "so the head keeps its fresh initialisation.", path, ", ".join(sorted(set(rep.skipped_classifier))),
        )
    if mapped:
        _logger.info("'%s': %d tensors converted to this network's formulation (%s, ...)", path, len(mapped), mapped[0])
    return {"loaded": len(to_load), "skipped_classifier": sorted(set(rep.skipped_classifier)), "ignored": ignored,
            "form_mapped": mapped, "ema": ema}
