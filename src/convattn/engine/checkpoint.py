"""Checkpoint manager: atomic writes, ``<model>-<epoch>_<step>.ckpt`` + ``<model>_best.ckpt``, keep last N.

Every file is first written to a hidden temporary name in the same folder and then moved into place
with ``os.replace`` (atomic on POSIX), so a process killed at any moment leaves either the previous
good file or the new complete one, never a truncated checkpoint under a real name. A checkpoint holds
the network (with BatchNorm statistics), the optimizer state (moments, global step, learning-rate
table), the EMA weights and the loss-scale state, plus ``epoch``/``step``/``global_step``/``best_acc``.
"""
import glob
import os
import re
from typing import Dict, List, Optional

import mindspore as ms

__all__ = ["atomic_save_checkpoint", "CheckpointManager", "find_latest", "META_KEYS"]

META_KEYS = ("train.epoch", "train.step", "train.global_step", "train.best_acc")


def atomic_save_checkpoint(params: List[dict], path: str, meta: Optional[Dict] = None) -> str:
    """``mindspore.save_checkpoint`` to ``.<name>.tmp-<pid>.ckpt`` then ``os.replace`` onto ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name[:-5] if name.endswith('.ckpt') else name}.tmp-{os.getpid()}.ckpt")
    try:
        ms.save_checkpoint(params, tmp, append_dict=dict(meta or {}))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


_PATTERN = re.compile(r"^(?P<model>.+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")


def _periodic(folder: str, model: str) -> List[str]:
    """Periodic checkpoints of ``model`` in ``folder`` sorted by (epoch, step)."""
    out = []
    for path in glob.glob(os.path.join(folder, f"{glob.escape(model)}-*_*.ckpt")):
        m = _PATTERN.match(os.path.basename(path))
        if m and m.group("model") == model:
            out.append((int(m.group("epoch")), int(m.group("step")), path))
    return [p for *_, p in sorted(out)]


def find_latest(folder: str, model: str) -> Optional[str]:
    """The newest periodic checkpoint (highest epoch, step) of ``model`` in ``folder``, or None."""
    found = _periodic(folder, model)
    return found[-1] if found else None


class CheckpointManager:
    """Writes ``<model>-<epoch>_<step>.ckpt`` (keeping the last ``keep_max``) and ``<model>_best.ckpt``."""

    def __init__(self, folder: str, model: str, keep_max: int = 5) -> None:
        if keep_max < 1:
            raise ValueError(f"keep_max must be >= 1, got {keep_max}")
        self.folder, self.model, self.keep_max = folder, model, keep_max  # the folder is made by the first save

    def save(self, params: List[dict], epoch: int, step: int, meta: Dict) -> str:
        path = os.path.join(self.folder, f"{self.model}-{epoch}_{step}.ckpt")
        atomic_save_checkpoint(params, path, meta)
        for old in _periodic(self.folder, self.model)[:-self.keep_max]:
            os.remove(old)
        return path

    def save_best(self, params: List[dict], meta: Dict) -> str:
        return atomic_save_checkpoint(params, os.path.join(self.folder, f"{self.model}_best.ckpt"), meta)

    def latest(self) -> Optional[str]:
        return find_latest(self.folder, self.model)
