"""Loading MindSpore checkpoints into registered models."""
import logging
import os
from typing import Optional

import mindspore as ms

from ..utils.state import compare_shapes

__all__ = ["load_checkpoint", "CheckpointMismatchError", "TRAINING_STATE_PREFIXES"]

_logger = logging.getLogger(__name__)

# Entries a training checkpoint carries beside the weights (optimizer moments, schedules, counters).
TRAINING_STATE_PREFIXES = (
    "moments.", "accum.", "adam_m.", "adam_v.", "moment1.", "moment2.", "ema.", "global_step",
    "learning_rate", "beta1_power", "beta2_power", "epoch_num", "step_num", "scale_sense",
    "current_iterator_step", "last_overflow_iterator_step", "loss_scale", "train_state.",
    "train.",  # the engine's position entries (train.epoch, train.step, train.global_step, train.best_acc)
)


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the network (another variant or another model)."""


def load_checkpoint(net, path: str, classifier: Optional[str] = "head", strict: bool = True) -> dict:
    """Load a MindSpore ``.ckpt`` into ``net``.

    Every network parameter must be present with the same shape, except the classifier: when its
    class count differs (or the network has no head, e.g. ``features_only``), the classifier is
    skipped and the rest loads, with a log message saying so. Optimizer/training entries are ignored.
    Returns ``{'loaded': n, 'skipped_classifier': [...], 'ignored': [...]}``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (pass the path to a MindSpore .ckpt file)")
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for non-ckpt files
        raise CheckpointMismatchError(
            f"'{path}' is not a readable MindSpore checkpoint ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). "
            "For an official PyTorch checkpoint, convert it first: python -m convattn.convert --model NAME SRC DST"
        ) from exc
    ignored = [k for k in raw if k.startswith(TRAINING_STATE_PREFIXES)]
    weights = {k: v for k, v in raw.items() if k not in set(ignored)}
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
    return {"loaded": len(to_load), "skipped_classifier": sorted(set(rep.skipped_classifier)), "ignored": ignored}
