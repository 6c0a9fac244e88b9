"""A training run as the unit of export and inference.

A run folder holds the effective ``config.yaml`` the trainer wrote (model, ``model_kwargs``, class count, image size,
crop, interpolation, mean/std), ``class_names.json`` and the checkpoints. ``export`` and ``infer`` take ``-c
RUN/config.yaml`` (as ``eval`` does) and read everything from it; given only a checkpoint, they read the
``config.yaml`` beside it when it trained the same model.
"""
import os
import re
from typing import Optional

from ..utils.errors import UserError

__all__ = ["RunConfigError", "PREPROCESSING_KEYS", "load_run_config", "run_config_beside", "run_model",
           "run_checkpoint", "run_preprocessing"]

PREPROCESSING_KEYS = ("image_size", "crop_pct", "interpolation", "mean", "std")


class RunConfigError(UserError, ValueError):
    """A ``-c`` file that is not a training run's config."""

    exit_code = 2


def load_run_config(path: str) -> dict:
    """The flat mapping of a run's ``config.yaml``; a missing file or a file without ``model`` is a
    :class:`RunConfigError` (invalid YAML raises PyYAML's error)."""
    import yaml

    if not os.path.isfile(path):
        raise RunConfigError(f"run config {path} does not exist (give the config.yaml a training run wrote, "
                             "e.g. -c output/quickstart_van_b0/config.yaml)")
    with open(path, encoding="utf-8") as f:  # a YAML error is told by the tools' one error path (file, line)
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict) or not data.get("model"):
        raise RunConfigError(f"{path} is not a training run's config (no 'model' key); give the config.yaml "
                             "written into a run's ckpt_dir")
    data["_path"] = os.path.abspath(path)
    return data


def run_config_beside(ckpt: str, model: Optional[str] = None) -> Optional[dict]:
    """The ``config.yaml`` beside ``ckpt`` when it is a run's config for ``model`` (any model for None)."""
    path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "config.yaml")
    if not os.path.isfile(path):
        return None
    try:
        data = load_run_config(path)
    except RunConfigError:
        return None
    return data if model is None or data.get("model") == model else None


def run_model(run: dict, model: Optional[str] = None) -> str:
    """The run's model; a ``--model`` that names another one is a :class:`RunConfigError`."""
    if model is not None and model != run["model"]:
        raise RunConfigError(f"--model {model} contradicts the run config {run['_path']} (model {run['model']}); "
                             "leave --model out")
    return run["model"]


def run_checkpoint(run: dict) -> str:
    """The checkpoint a run stands for: ``<model>_best.ckpt`` in its folder, else its newest periodic one."""
    folder = os.path.dirname(run["_path"])
    model = run["model"]
    best = os.path.join(folder, f"{model}_best.ckpt")
    if os.path.isfile(best):
        return best
    pattern = re.compile(rf"^{re.escape(model)}-(\d+)_(\d+)\.ckpt$")
    found = sorted((tuple(int(g) for g in m.groups()), name) for name in os.listdir(folder)
                   for m in [pattern.match(name)] if m)
    if not found:
        raise RunConfigError(f"the run {folder} has no checkpoint of {model} ({model}_best.ckpt or "
                             f"{model}-EPOCH_STEP.ckpt); pass --ckpt FILE")
    return os.path.join(folder, found[-1][1])


def run_preprocessing(run: dict) -> dict:
    """The run's eval preprocessing keys (null where the model's default applies)."""
    return {k: run.get(k) for k in PREPROCESSING_KEYS}
