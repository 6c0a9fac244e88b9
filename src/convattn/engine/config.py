"""Training/evaluation configuration: mindcv-style flat keys, YAML files, command-line overrides.

A config file is flat YAML (``key: value``) grouped under comment headers (``# system``, ``# dataset``,
...). Every key can be overridden on the command line as ``--key value`` (values are parsed as YAML,
so ``--lr 0.01``, ``--amp_level O2``, ``--model_kwargs '{depths: [1, 1, 1, 1]}'`` all work). An unknown
key, in the file or on the command line, fails with the closest valid keys; every value is checked
(type and range; ``data_dir`` must exist unless it is the quickstart digits folder, which is written
on first use) before any work starts.
"""
import argparse
import copy
import difflib
import math
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..utils.cli import ArgumentParser, parse_model_kwargs
from ..utils.errors import UserError

__all__ = ["ConfigError", "Config", "SCHEMA", "GROUPS", "load_config", "parse_cli", "validate", "dump_config",
           "format_config"]


class ConfigError(UserError, ValueError):
    """A bad config key or value; the message names the key, the problem and the fix."""

    exit_code = 2


# (key, default, type(s), help). Types: 'int', 'float', 'bool', 'str', 'list', 'dict', with '?' = may be null.
GROUPS: "OrderedDict[str, List[tuple]]" = OrderedDict([
    ("system", [
        ("mode", 0, "int", "0 = GRAPH_MODE (default), 1 = PYNATIVE_MODE"),
        ("device_target", "CPU", "str", "CPU, GPU or Ascend (any case)"),
        ("distribute", False, "bool", "data-parallel training via mindspore.communication.init (msrun / rank table)"),
        ("seed", 42, "int", "global seed (weights, data order, augmentation)"),
        ("deterministic", False, "bool", "deterministic kernels and single-worker data loading (exact resume)"),
        ("num_parallel_workers", 2, "int", "data-loading workers per process"),
        ("cpu_threads", 0, "int", "CPU intra-op threads (0 = MindSpore default)"),
        ("log_interval", 10, "int", "print progress every N steps"),
    ]),
    ("dataset", [
        ("dataset", "imagefolder", "str", "imagefolder or digits (the bundled quickstart set, written on first use)"),
        ("data_dir", None, "str?", "root holding train/ and val/ ImageFolder trees"),
        ("train_split", "train", "str", "train sub-folder"),
        ("val_split", "val", "str", "validation sub-folder"),
        ("num_classes", 1000, "int", "number of classes"),
        ("batch_size", 32, "int", "per-device batch size"),
        ("drop_remainder", True, "bool", "drop the last incomplete training batch"),
        ("shuffle", True, "bool", "shuffle the training set every epoch"),
        ("bad_images", "skip", "str", "an image file that cannot be decoded (truncated, empty, not an image): 'skip' "
                                      "replaces it by the next image and counts it (reported each epoch), "
                                      "'stop' ends the run naming the file"),
        ("aug_repeats", 1, "int", "repeated augmentation (DeiT RASampler): each image appears this many times per "
                                  "epoch, differently augmented, spread over the ranks; epoch length unchanged"),
    ]),
    ("augmentation", [
        ("image_size", None, "int?", "training/eval resolution (null = the model's default input size; the run "
                                     "prints and saves the value used, as for every null below)"),
        ("crop_pct", None, "float?", "eval resize = image_size / crop_pct, then centre crop (null = model default)"),
        ("interpolation", None, "str?", "bilinear, bicubic, nearest or area (null = model default)"),
        ("mean", None, "list?", "normalisation mean in [0, 1] (null = model default)"),
        ("std", None, "list?", "normalisation std in [0, 1] (null = model default)"),
        ("scale", [0.08, 1.0], "list", "RandomResizedCrop area range"),
        ("ratio", [0.75, 1.3333333], "list", "RandomResizedCrop aspect-ratio range"),
        ("hflip", 0.5, "float", "horizontal flip probability"),
        ("color_jitter", 0.0, "float", "brightness/contrast/saturation jitter (0 = off; ignored when RandAugment is on)"),
        ("auto_augment", None, "str?", "RandAugment policy 'rand-m<M>[-n<N>]', e.g. rand-m9-n2 (null = off)"),
        ("re_prob", 0.0, "float", "random-erasing probability"),
        ("mixup", 0.0, "float", "mixup alpha (0 = off)"),
        ("cutmix", 0.0, "float", "cutmix alpha (0 = off)"),
        ("mixup_prob", 1.0, "float", "probability of applying mixup/cutmix to a batch"),
        ("mixup_switch_prob", 0.5, "float", "probability of cutmix instead of mixup when both are on"),
    ]),
    ("model", [
        ("model", None, "str?", "registered model name (convattn.list_models()); required"),
        ("model_kwargs", {}, "dict", "architecture overrides passed to convattn.create_model (checked against the "
                                     "model's constructor)"),
        ("target", None, "str?", "formulations the network is built in: CPU, GPU or Ascend (null = device_target); "
                                 "e.g. Ascend on a CPU device runs the Ascend form there"),
        ("drop_rate", None, "float?", "dropout inside the model (null = model default; the run prints the value used)"),
        ("drop_path_rate", None, "float?",
         "stochastic depth (null = the model's official rate; the run prints the value used)"),
        ("pretrained", None, "bool_or_str?", "initial weights: true = the model's official ImageNet weights "
                                             "(downloaded, verified, converted and cached on first use; see "
                                             "docs/convert.md), or a file: an official PyTorch .pth / .pth.tar "
                                             "(converted on the fly) or a MindSpore .ckpt; train: a new class count "
                                             "re-initialises the classifier; eval.py: instead of --ckpt"),
        ("deploy", False, "bool", "eval.py: switch_to_deploy() (re-parameterised inference form) before evaluating"),
        ("amp_level", "O0", "str", "O0 (fp32), O1, O2, O3 (float16)"),
        ("amp_dtype", "float16", "str", "float16 or bfloat16 (bfloat16: Ascend/GPU only)"),
        ("loss_scale", 1024.0, "float", "initial loss scale for AMP O1-O3 (dynamic)"),
    ]),
    ("loss", [
        ("loss", "ce", "str", "ce (cross-entropy with soft targets)"),
        ("label_smoothing", 0.0, "float", "label smoothing epsilon"),
        ("label_smoothing_mode", "standard", "str",
         "standard (epsilon over all C classes) or wrong_classes (epsilon over the C-1 wrong ones: SAN/ACmix)"),
    ]),
    ("optimizer", [
        ("opt", "adamw", "str", "adamw or momentum (SGD with momentum)"),
        ("momentum", 0.9, "float", "SGD momentum"),
        ("nesterov", False, "bool", "Nesterov momentum"),
        ("betas", [0.9, 0.999], "list", "AdamW betas"),
        ("eps", 1e-8, "float", "AdamW epsilon"),
        ("weight_decay", 0.05, "float", "weight decay (never on norms, biases, layer scale)"),
        ("clip_grad", 0.0, "float", "global-norm gradient clipping (0 = off)"),
    ]),
    ("scheduler", [
        ("scheduler", "cosine", "str", "cosine or constant"),
        ("lr", 1e-3, "float", "peak learning rate at the reference batch (see lr_scale)"),
        ("lr_scale", "none", "str", "none or linear: lr *= global_batch / lr_base_batch"),
        ("lr_base_batch", 1024, "int", "reference global batch for lr_scale=linear"),
        ("min_lr", 1e-6, "float", "final learning rate of the cosine"),
        ("warmup_epochs", 0.0, "float", "linear warm-up length in epochs"),
        ("warmup_lr", 1e-6, "float", "learning rate at the start of warm-up"),
        ("cooldown_epochs", 0, "int", "epochs at min_lr after the cosine"),
    ]),
    ("train", [
        ("epochs", 10, "int", "training epochs (cooldown included)"),
        ("accumulation_steps", 1, "int", "gradient accumulation: one optimizer step per N micro-batches of batch_size "
                                         "(global batch = batch_size x devices x N; BatchNorm sees micro-batches)"),
        ("recompute", False, "bool", "recompute each residual block's activations in the backward pass instead of "
                                     "keeping them (MindSpore Cell.recompute; less device memory, about one more "
                                     "forward of time); see configs/README.md, device memory"),
        ("ema", False, "bool", "keep an exponential moving average of the weights (evaluated instead)"),
        ("ema_decay", 0.9999, "float", "EMA decay per step"),
        ("val_interval", 1, "int", "evaluate every N epochs (0 = only at the end)"),
        ("max_steps_per_epoch", 0, "int", "cut each epoch after N (micro-)batches (0 = full epoch; for smoke tests)"),
    ]),
    ("checkpoint", [
        ("ckpt_dir", "./output", "str", "output folder: checkpoints, effective config, CSV log, curves PNG"),
        ("ckpt_interval", 1, "int", "save every N epochs"),
        ("ckpt_steps", 0, "int", "also save every N optimizer steps (0 = off)"),
        ("keep_checkpoint_max", 5, "int", "keep the last N periodic checkpoints"),
        ("resume", None, "str?", "checkpoint to resume from, or 'auto' (latest in ckpt_dir)"),
        ("ckpt", None, "str?", "checkpoint to evaluate (eval.py)"),
    ]),
])

SCHEMA: Dict[str, tuple] = {k: (d, t, h) for items in GROUPS.values() for (k, d, t, h) in items}
DEFAULTS: Dict[str, Any] = {k: copy.deepcopy(v[0]) for k, v in SCHEMA.items()}

_CHOICES = {
    "mode": (0, 1),
    "device_target": ("CPU", "GPU", "Ascend"),
    "target": (None, "CPU", "GPU", "Ascend"),
    "dataset": ("imagefolder", "digits"),
    "bad_images": ("skip", "stop"),
    "interpolation": (None, "bilinear", "bicubic", "nearest", "area"),
    "amp_level": ("O0", "O1", "O2", "O3"),
    "amp_dtype": ("float16", "bfloat16"),
    "loss": ("ce",),
    "label_smoothing_mode": ("standard", "wrong_classes"),
    "opt": ("adamw", "momentum"),
    "scheduler": ("cosine", "constant"),
    "lr_scale": ("none", "linear"),
}


# keys naming a device / a target of formulations, read in any case through layers.targets.resolve_target
_TARGET_KEYS = ("device_target", "target")


def _normalised_target(value):
    """``'ascend'`` -> ``'Ascend'`` (any case, as every ``--target`` flag); None and unknown names unchanged."""
    if not isinstance(value, str):
        return value
    from ..layers.targets import resolve_target
    try:
        return resolve_target(value)
    except ValueError:
        return value


class Config(dict):
    """A dict with attribute access (``cfg.lr``); unknown attributes fail with the closest keys."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(_unknown_msg(name, self.keys())) from None

    def __setattr__(self, name, value):
        self[name] = value


def _unknown_msg(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Run with --help to list the valid keys."
    return f"unknown config key '{key}'.{hint}"


def _check_known(keys, where: str) -> None:
    for key in keys:
        if key not in SCHEMA:
            raise ConfigError(f"{where}: {_unknown_msg(key, SCHEMA)}")


def _type_ok(value, kind: str) -> bool:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return nullable
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "bool_or_str":
        return isinstance(value, (bool, str))
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, (list, tuple))
    if kind == "dict":
        return isinstance(value, dict)
    raise AssertionError(kind)


def validate(cfg: Dict[str, Any], for_training: bool = True) -> Config:
    """Check every key and value; return a :class:`Config`. Raises :class:`ConfigError` on the first problem."""
    _check_known(cfg, "config")
    out = Config(copy.deepcopy(DEFAULTS))
    out.update(copy.deepcopy(dict(cfg)))
    for key, (_, kind, _) in SCHEMA.items():
        value = out[key]
        if not _type_ok(value, kind):
            raise ConfigError(f"config key '{key}' must be {kind.rstrip('?').replace('_', ' ')}"
                              f"{' or null' if kind.endswith('?') else ''}, "
                              f"got {value!r} ({type(value).__name__})")
        if kind.startswith("float") and value is not None:
            out[key] = float(value)
            if not math.isfinite(out[key]):
                raise ConfigError(f"config key '{key}' must be finite, got {value!r}")
    for key in _TARGET_KEYS:  # any case: 'ascend', 'CPU', 'gpu' (an unknown name fails the choice check below)
        out[key] = _normalised_target(out[key])
    for key, allowed in _CHOICES.items():
        if out[key] not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {list(allowed)}, got {out[key]!r}")

    def positive(*keys):
        for k in keys:
            if out[k] is not None and not out[k] > 0:
                raise ConfigError(f"config key '{k}' must be > 0, got {out[k]!r}")

    def non_negative(*keys):
        for k in keys:
            if out[k] is not None and out[k] < 0:
                raise ConfigError(f"config key '{k}' must be >= 0, got {out[k]!r}")

    def probability(*keys):
        for k in keys:
            if not 0.0 <= out[k] <= 1.0:
                raise ConfigError(f"config key '{k}' must be in [0, 1], got {out[k]!r}")

    positive("accumulation_steps", "aug_repeats", "batch_size", "num_classes", "epochs", "lr", "num_parallel_workers", "log_interval", "ckpt_interval",
             "keep_checkpoint_max", "lr_base_batch", "image_size", "crop_pct", "loss_scale", "ema_decay", "eps")
    non_negative("min_lr", "warmup_lr", "warmup_epochs", "cooldown_epochs", "weight_decay", "clip_grad", "mixup",
                 "cutmix", "momentum", "val_interval", "max_steps_per_epoch", "ckpt_steps", "cpu_threads", "seed",
                 "drop_rate", "drop_path_rate")
    probability("hflip", "re_prob", "mixup_prob", "mixup_switch_prob", "label_smoothing", "momentum")
    if out.crop_pct is not None and out.crop_pct > 1.0:
        raise ConfigError(f"config key 'crop_pct' must be in (0, 1], got {out.crop_pct}")
    if not out.ema_decay < 1.0:
        raise ConfigError(f"config key 'ema_decay' must be in (0, 1), got {out.ema_decay}")
    if out.drop_path_rate is not None and out.drop_path_rate >= 1.0:
        raise ConfigError(f"config key 'drop_path_rate' must be in [0, 1), got {out.drop_path_rate}")
    if out.color_jitter > 1.0:
        raise ConfigError(f"config key 'color_jitter' must be in [0, 1], got {out.color_jitter}")
    if out.cooldown_epochs + out.warmup_epochs > out.epochs:
        raise ConfigError(f"warmup_epochs ({out.warmup_epochs}) + cooldown_epochs ({out.cooldown_epochs}) exceed "
                          f"epochs ({out.epochs}); shorten them or train longer")
    for key, n in (("scale", 2), ("ratio", 2), ("betas", 2)):
        v = out[key]
        if len(v) != n or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise ConfigError(f"config key '{key}' must be a list of {n} numbers, got {v!r}")
        out[key] = [float(x) for x in v]
    if not 0 < out.scale[0] <= out.scale[1] <= 1.0:
        raise ConfigError(f"config key 'scale' must satisfy 0 < min <= max <= 1, got {out.scale}")
    if not 0 < out.ratio[0] <= out.ratio[1]:
        raise ConfigError(f"config key 'ratio' must satisfy 0 < min <= max, got {out.ratio}")
    if not all(0.0 <= b < 1.0 for b in out.betas):
        raise ConfigError(f"config key 'betas' must be in [0, 1), got {out.betas}")
    for key in ("mean", "std"):
        v = out[key]
        if v is not None and (len(v) != 3 or not all(isinstance(x, (int, float)) for x in v)):
            raise ConfigError(f"config key '{key}' must be a list of 3 numbers in [0, 1] (or null), got {v!r}")
    if out.std is not None and not all(x > 0 for x in out.std):
        raise ConfigError(f"config key 'std' must be positive, got {out.std}")
    if out.auto_augment is not None:
        from ..data.transforms import parse_randaugment
        try:
            parse_randaugment(out.auto_augment)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if out.min_lr > out.lr:
        raise ConfigError(f"min_lr ({out.min_lr}) is above lr ({out.lr}); lower min_lr")
    # the model must exist and accept model_kwargs' names (checked before any data work)
    _check_model(out)
    # paths
    if out.dataset == "imagefolder":
        if out.data_dir is None:
            raise ConfigError("config key 'data_dir' is required for dataset 'imagefolder': "
                              "pass --data_dir /path/to/imagenet (holding train/ and val/)")
        splits = [out.train_split, out.val_split] if for_training else [out.val_split]
        for split in splits:
            path = os.path.join(out.data_dir, split)
            if not os.path.isdir(path):
                raise ConfigError(f"data folder {path} does not exist: 'data_dir' must hold the '{split}' "
                                  f"ImageFolder tree (set --data_dir, or --train_split/--val_split)")
    elif out.data_dir is None:
        out.data_dir = "./data/digits"
    else:
        name = os.path.basename(os.path.normpath(out.data_dir))
        if "digits" not in name.lower() and not os.path.exists(out.data_dir):
            raise ConfigError(f"data_dir {out.data_dir} does not exist; dataset 'digits' writes its tree on first "
                              f"use only into an existing folder or one named like 'digits' (e.g. ./data/digits), so "
                              f"that a mistyped path is not filled with a new copy: check --data_dir")
    if out.dataset == "digits" and out.num_classes != 10:
        raise ConfigError(f"dataset 'digits' has 10 classes; set num_classes: 10 (got {out.num_classes})")
    if out.pretrained is False:
        out.pretrained = None
    for key in ("pretrained", "ckpt"):
        if isinstance(out[key], str) and not os.path.isfile(out[key]):
            raise ConfigError(f"config key '{key}': checkpoint file {out[key]} does not exist")
    if out.pretrained is True:
        _check_official_weights(out.model)
    if out.resume not in (None, "auto") and not os.path.isfile(out.resume):
        raise ConfigError(f"config key 'resume': {out.resume} does not exist (give a .ckpt file or 'auto')")
    if out.amp_dtype == "bfloat16" and out.device_target == "CPU" and out.amp_level != "O0":
        raise ConfigError("amp_dtype bfloat16 has no CPU kernels in MindSpore 2.10 (Conv2D/MatMul fail); "
                          "use amp_dtype float16 on CPU")
    return out


# create_model arguments the trainer sets from their own config keys; model_kwargs may not repeat them
_OWN_KEYS = {"num_classes": "num_classes", "drop_path_rate": "drop_path_rate", "drop_rate": "drop_rate",
             "pretrained": "pretrained"}


def _check_official_weights(model: str) -> None:
    """``pretrained: true`` needs official weights a script can fetch (nothing is downloaded here)."""
    from ..models.registry import weights_entry
    entry = weights_entry(model)
    if entry["status"] == "unreleased":
        raise ConfigError(f"config key 'pretrained': {model} has no official pretrained weights: never released "
                          f"({entry['reason']}); drop 'pretrained: true' or give a checkpoint file")
    if entry["status"] == "manual":
        raise ConfigError(f"config key 'pretrained': {model}'s official weights are only behind {entry['manual']} "
                          f"(no script can fetch them): download the file, then pass --pretrained FILE.pth (or "
                          f"convert it with python -m convattn.convert --model {model} FILE.pth {model}.ckpt)")


def _check_model(out: "Config") -> None:
    """``model`` is given and registered; ``model_kwargs`` are names its constructor accepts."""
    from ..models import get_model_cfg, list_models
    from ..models.registry import accepted_kwargs, model_entrypoint
    if out.model is None:
        raise ConfigError("config key 'model' is required: set 'model: NAME' in the config file or pass --model NAME "
                          f"(one of convattn.list_models(), e.g. {', '.join(list_models()[:3])})")
    try:
        get_model_cfg(out.model)
    except ValueError as exc:
        raise ConfigError(f"config key 'model': {exc}") from None
    for key in out.model_kwargs:
        if key in _OWN_KEYS:
            raise ConfigError(f"config key 'model_kwargs' sets '{key}', which has its own config key: remove it from "
                              f"model_kwargs and set '{_OWN_KEYS[key]}: ...' instead")
        if key in ("features_only", "out_indices"):
            raise ConfigError(f"config key 'model_kwargs': '{key}' builds a feature extractor, which cannot be "
                              "trained or evaluated as a classifier; remove it")
    accepted = accepted_kwargs(model_entrypoint(out.model))
    for key in ("drop_path_rate", "drop_rate"):
        if accepted is not None and key not in accepted and out[key]:
            raise ConfigError(f"config key '{key}': {out.model} has no {key.replace('_', ' ')} (got {out[key]}); "
                              f"set {key}: null (or 0)")
    if accepted is not None:
        bad = sorted(k for k in out.model_kwargs if k not in accepted and k != "in_chans")
        if bad:
            hints = []
            for k in bad:
                close = difflib.get_close_matches(k, sorted(accepted), n=1, cutoff=0.6)
                hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ConfigError(f"config key 'model_kwargs': {out.model} does not accept {', '.join(hints)}; accepted "
                              f"architecture arguments: {sorted(a for a in accepted if a not in _OWN_KEYS)}")


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_cli(argv: Optional[Sequence[str]], description: str) -> Dict[str, Any]:
    """``-c/--config FILE`` plus ``--key value`` overrides -> a merged (unvalidated) dict."""
    epilog = "config keys (override any with --key value):\n" + "\n".join(
        f"  [{group}] " + ", ".join(k for k, *_ in items) for group, items in GROUPS.items())
    parser = ArgumentParser(description=description, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=None, help="YAML config file")
    args, rest = parser.parse_known_args(argv)
    overrides: Dict[str, Any] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}: overrides are written --key value")
        key = tok[2:].replace("-", "_")
        if "=" in key:
            key, text = key.split("=", 1)
            i += 1
        else:
            missing = i + 1 >= len(rest) or (rest[i + 1].startswith("--") and len(rest[i + 1]) > 2
                                             and not _is_number(rest[i + 1]))
            if missing and key in SCHEMA and SCHEMA[key][1].startswith("bool"):
                text, i = "true", i + 1  # a bare boolean flag (e.g. eval.py --deploy, --pretrained) means true
            elif missing:
                raise ConfigError(f"--{key} needs a value (write --{key} VALUE)")
            else:
                text = rest[i + 1]
                i += 2
        if key not in SCHEMA:
            raise ConfigError(f"command line: {_unknown_msg(key, SCHEMA)}")
        if key == "model_kwargs":  # the one model_kwargs syntax of every command line (utils.cli)
            try:
                overrides[key] = parse_model_kwargs(text)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            continue
        overrides[key] = _parse_value(text)
        kind = SCHEMA[key][1].rstrip("?")
        if kind == "str" and overrides[key] is not None and not isinstance(overrides[key], str):
            overrides[key] = text  # e.g. --amp_level O0 stays a string even if YAML would read it otherwise
        elif kind == "bool_or_str" and overrides[key] is not None and not isinstance(overrides[key], (bool, str)):
            overrides[key] = text  # a path YAML reads as a number stays a path
    return load_config(args.config, overrides)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_config(path: Optional[str], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Read a YAML config (flat keys) and apply ``overrides``; checks key names, not values."""
    cfg: Dict[str, Any] = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path} does not exist")
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of flat keys, got {type(data).__name__}")
        nested = [k for k, v in data.items() if isinstance(v, dict) and k not in SCHEMA]
        if nested:
            raise ConfigError(f"config file {path}: keys are flat (mindcv style); '{nested[0]}' is a nested section. "
                              f"{_unknown_msg(nested[0], SCHEMA)}")
        _check_known(data, f"config file {path}")
        cfg.update(data)
    if overrides:
        _check_known(overrides, "overrides")
        cfg.update(overrides)
    return cfg


def format_config(cfg: Dict[str, Any]) -> str:
    """The config as grouped flat YAML (the text :func:`dump_config` writes)."""
    lines = []
    for group, items in GROUPS.items():
        lines.append(f"# {group}")
        for key, *_ in items:
            lines.append(yaml.safe_dump({key: _plain(cfg[key])}, default_flow_style=True, sort_keys=False).strip()
                         .removeprefix("{").removesuffix("}"))
        lines.append("")
    return "\n".join(lines)


def dump_config(cfg: Dict[str, Any], path: str) -> None:
    """Write the effective config as grouped flat YAML (atomically)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(format_config(cfg))
    os.replace(tmp, path)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
