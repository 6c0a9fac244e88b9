"""The training and evaluation loops (functional ``value_and_grad`` + ``mindspore.jit`` train step).

``train`` is a short loop (batch, mixup, train step, divergence check); evaluation, the EMA weights for it,
checkpoints and logging are callbacks (:mod:`convattn.engine.callbacks`), and ``train(cfg, callbacks=[...])`` adds
more (the tests inject their faults this way).

Exact resume: a checkpoint stores weights, BatchNorm statistics, optimizer moments + global step,
EMA, loss-scale state, and the position (epoch, step). Each epoch's data order and augmentation come
from a seed derived from (seed, epoch), and mixup draws from (seed, epoch, step), so a resumed run
replays the rest of an interrupted epoch exactly (the already-trained batches are read and discarded).
In deterministic mode (``deterministic: true``, one data worker) on CPU a run killed mid-epoch and
resumed ends with bit-identical weights. Stochastic layers (drop path, dropout) draw from MindSpore's
kernel RNG, which GRAPH mode cannot rewind; in deterministic PYNATIVE mode the trainer reseeds it every
step, so exact resume with drop path needs ``mode: 1`` (GRAPH mode warns).
"""
import hashlib
import logging
import math
import os
import time
from typing import Optional, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from ..utils.params import count_parameters, format_params
from .checkpoint import CheckpointManager
from .callbacks import (Callback, CallbackList, CheckpointCallback, EMAWeightsCallback, EvaluateCallback,
                        LoggingCallback, TrainState, log_line as _print)
from .config import Config, ConfigError, dump_config, format_config
from .ema import EMA
from .losses import SoftTargetCrossEntropy
from .optim import create_optimizer
from .scheduler import build_lr_schedule
from .step import build_train_step, mixed_precision
from ..utils.errors import UserError, check_writable_dir

__all__ = ["TrainingDiverged", "setup_context", "build_model", "build_loaders", "train", "evaluate", "weights_digest"]

_log = logging.getLogger("convattn.train")


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint was left untouched."""

    exit_code = 3


# --------------------------------------------------------------------------------------------- setup
def setup_context(cfg: Config):
    """Mode, device, seed, determinism and (optionally) the communication group. Returns (rank, group_size)."""
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == 0 else ms.PYNATIVE_MODE)
    device_id = int(os.environ["DEVICE_ID"]) if os.environ.get("DEVICE_ID", "").isdigit() else None  # rank-table launcher
    try:
        ms.set_device(cfg.device_target, device_id)
    except RuntimeError:
        # MindSpore fixes the device once a kernel has run; a second run in the same process (a notebook, the test
        # suite) is fine when it asks for the device already in use.
        if ms.get_context("device_target") != cfg.device_target:
            raise RuntimeError(f"this process already runs on {ms.get_context('device_target')}; "
                               f"device_target={cfg.device_target} needs a new process") from None
    if cfg.deterministic:
        ms.set_context(deterministic="ON")
    if cfg.cpu_threads:
        ms.device_context.cpu.op_tuning.threads_num(cfg.cpu_threads)
        if (cfg.target or cfg.device_target).upper() == "CPU":
            from ..layers.targets import set_cpu_backend_threads

            set_cpu_backend_threads(cfg.cpu_threads)  # the fused kernels use the same count
    ms.set_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rank, size = 0, 1
    if cfg.distribute:
        from mindspore.communication import get_group_size, get_rank, init
        init()
        rank, size = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=size)
    return rank, size


def build_model(cfg: Config, **form):
    """The configured network in float32 (``form``: further :func:`convattn.create_model` arguments, e.g.
    ``pretrained``, ``deploy``, ``load_args``); training applies ``amp_level`` in
    :func:`~convattn.engine.step.build_train_step`, evaluation through the same
    :func:`~convattn.engine.step.mixed_precision`."""
    from ..models import create_model
    from ..models.registry import accepted_kwargs, model_entrypoint
    accepted = accepted_kwargs(model_entrypoint(cfg.model))
    kwargs = dict(cfg.model_kwargs)
    for key in ("drop_rate", "drop_path_rate"):  # a model without it takes no 0 (config validation refuses > 0)
        if cfg[key] is not None and (accepted is None or key in accepted or cfg[key]):
            kwargs[key] = cfg[key]
    form.setdefault("pretrained", cfg.pretrained)
    return create_model(cfg.model, num_classes=cfg.num_classes, target=cfg.target or cfg.device_target, **form,
                        **kwargs)


def effective_config(cfg: Config, data_cfg: dict, net) -> Config:
    """``cfg`` with every null that the run resolves replaced by the value used: the model's input size,
    crop, interpolation and normalisation, its drop-path/dropout rates, and the worker count."""
    from ..layers import DropPath
    out = Config(cfg)
    for key in ("image_size", "crop_pct", "interpolation", "mean", "std"):
        out[key] = list(data_cfg[key]) if isinstance(data_cfg[key], tuple) else data_cfg[key]
    from ..models.registry import accepted_kwargs, model_entrypoint
    cells = [c for _, c in net.cells_and_names()]
    accepted = accepted_kwargs(model_entrypoint(cfg.model))  # a saved config must build again: only keys it takes

    def takes(key: str) -> bool:
        return accepted is None or key in accepted

    if out.drop_path_rate is None and takes("drop_path_rate"):
        out.drop_path_rate = round(max([c.drop_prob for c in cells if isinstance(c, DropPath)], default=0.0), 6)
    if out.drop_rate is None and takes("drop_rate") and not any(float(getattr(c, "p", 0.0) or 0.0) > 0 for c in cells
                                                               if isinstance(c, nn.Dropout)):
        out.drop_rate = 0.0  # (a model with dropout keeps null: its rates may differ per layer)
    if out.deterministic:
        out.num_parallel_workers = 1
    return out


DIGITS_SIZE = 32  # the quickstart tree is always written at 32x32, whatever image_size a recipe trains at


def prepare_data_dir(cfg: Config, rank: int = 0) -> None:
    """For ``dataset: digits`` write the 32x32 ImageFolder tree on first use (rank 0; other ranks wait). The tree
    does not depend on the recipe (a 64x64 recipe resizes it), so the quickstarts read the same images whichever
    runs first; a tree of another size (written by hand) is used, with a warning."""
    if cfg.dataset != "digits":
        return
    from ..data import digits_tree_ready, digits_tree_size, write_digits_imagefolder
    if digits_tree_ready(cfg.data_dir):
        size = digits_tree_size(cfg.data_dir)
        if size is not None and size != DIGITS_SIZE:
            _print(f"warning: {cfg.data_dir} holds the digits at {size}x{size}; the quickstart results are for the "
                   f"{DIGITS_SIZE}x{DIGITS_SIZE} tree written on first use (rewrite it with python "
                   f"scripts/prepare_digits.py --out {cfg.data_dir} --overwrite)", rank)
        return
    if rank == 0:
        size = DIGITS_SIZE
        counts = write_digits_imagefolder(cfg.data_dir, size=size)
        _print(f"wrote the digits ImageFolder tree to {cfg.data_dir}: {counts['train']} train / "
               f"{counts['val']} val images ({size}x{size} RGB PNG)")
    else:
        deadline = time.time() + 300
        while not digits_tree_ready(cfg.data_dir):
            if time.time() > deadline:
                raise TimeoutError(f"rank {rank}: rank 0 did not finish writing {cfg.data_dir} in 300 s")
            time.sleep(0.5)


def build_loaders(cfg: Config, data_cfg: dict, rank: int, size: int):
    """Returns (make_train_loader(epoch) -> dataset, make_val() -> dataset, class_to_idx). Each tree is listed
    once; ``make_train.bad_log`` collects the undecodable files skipped under ``bad_images: skip``."""
    from ..data import BadImageLog, create_loader, eval_transforms, list_image_folder, train_transforms
    workers = 1 if cfg.deterministic else cfg.num_parallel_workers
    train_root = os.path.join(cfg.data_dir, cfg.train_split)
    val_root = os.path.join(cfg.data_dir, cfg.val_split)
    train_samples, class_to_idx, _ = list_image_folder(train_root)
    val_samples = None
    if os.path.isdir(val_root):  # a flat or foreign val tree fails now, not after the first epoch
        val_samples, _, _ = list_image_folder(val_root, class_to_idx)
    if len(class_to_idx) != cfg.num_classes:
        raise ConfigError(f"{train_root} has {len(class_to_idx)} classes but num_classes is {cfg.num_classes}; "
                          f"set --num_classes {len(class_to_idx)}")
    shards = dict(num_shards=size, shard_id=rank) if size > 1 else {}
    bad_log = BadImageLog()
    policy = dict(bad_images=cfg.bad_images, bad_log=bad_log, class_to_idx=class_to_idx)

    def make_train(epoch: int):
        tf = train_transforms(data_cfg["image_size"], data_cfg["mean"], data_cfg["std"], data_cfg["interpolation"],
                              cfg.scale, cfg.ratio, cfg.hflip, cfg.color_jitter, cfg.auto_augment, cfg.re_prob)
        dataset, _, _ = create_loader(train_root, tf, cfg.batch_size, cfg.shuffle, cfg.drop_remainder, workers,
                                      seed=cfg.seed * 100003 + epoch, aug_repeats=cfg.aug_repeats,
                                      samples=train_samples, **policy, **shards)
        return dataset

    def make_val():
        tf = eval_transforms(data_cfg["image_size"], data_cfg["mean"], data_cfg["std"], data_cfg["interpolation"],
                             data_cfg["crop_pct"])
        dataset, _, _ = create_loader(val_root, tf, cfg.batch_size, False, False, workers, seed=cfg.seed,
                                      samples=val_samples, **policy, **shards)
        return dataset

    make_train.bad_log = make_val.bad_log = bad_log
    make_train.num_samples = len(train_samples)  # known from the listing, before any dataset is built
    return make_train, make_val, class_to_idx


def weights_digest(net: nn.Cell) -> str:
    """sha256 over the trainable parameters (name order): equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for p in sorted(net.trainable_params(), key=lambda q: q.name):
        h.update(p.name.encode())
        h.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- eval
class _AllReduceSum(nn.Cell):
    def __init__(self):
        super().__init__()
        self.op = ops.AllReduce()

    def construct(self, x):
        return self.op(x)


def evaluate(net: nn.Cell, dataset, num_classes: int, distributed: bool = False) -> dict:
    """Top-1 / top-5 (%) and mean cross-entropy over ``dataset`` (summed over ranks when distributed).

    The network is left in the train/eval state it came in (a deploy-form network stays in eval mode)."""
    was_training = net.training
    net.set_train(False)
    forward = ms.jit(net.construct) if ms.get_context("mode") == ms.GRAPH_MODE else net
    correct1 = correct5 = loss_sum = 0.0
    n = 0
    k = min(5, num_classes)
    for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        _rearm_interrupt()
        images, labels = batch
        logits = forward(ms.Tensor(images)).asnumpy().astype(np.float64)
        labels = labels.astype(np.int64)
        m = logits.max(-1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(labels)), labels].sum())
        topk = np.argsort(-logits, -1)[:, :k]
        correct1 += float((topk[:, 0] == labels).sum())
        correct5 += float((topk == labels[:, None]).any(-1).sum())
        n += len(labels)
    if distributed:
        totals = _AllReduceSum()(ms.Tensor(np.array([correct1, correct5, loss_sum, n], np.float32))).asnumpy()
        correct1, correct5, loss_sum, n = [float(v) for v in totals]
    if was_training:
        net.set_train(True)
    n = max(n, 1)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n, "n": int(n)}


# --------------------------------------------------------------------------------------------- train
def _state_params(net, optimizer, ema, scaler) -> list:
    seen, out = set(), []
    cells = [net, optimizer] + ([ema] if ema is not None else [])
    for cell in cells:
        for name, p in cell.parameters_and_names():
            if p.name in seen or name.startswith("src."):
                continue
            seen.add(p.name)
            out.append({"name": p.name, "data": p})
    if scaler is not None:
        out.append({"name": "loss_scale.scale_value", "data": scaler.scale_value})
        out.append({"name": "loss_scale.counter", "data": scaler.counter})
    return out


# optimizer state that describes the schedule, not the training so far: recomputed for the resumed run's length
_SCHEDULE_KEYS = ("learning_rate", "global_step")


class ResumeError(UserError, ValueError):
    """A checkpoint that cannot continue this run as configured; the message names what differs."""

    exit_code = 2


def _load_state(path: str, data: dict, net, optimizer, ema, scaler) -> None:
    """Load a training checkpoint ``data`` (read from ``path``, its position checked by :func:`resume_position`)."""
    from ..models.helpers import map_checkpoint_forms
    map_checkpoint_forms(data, net, optimizer, ema)  # written by another formulation (e.g. on another device)
    not_loaded, _ = ms.load_param_into_net(net, data, strict_load=True)
    if not_loaded:
        raise ResumeError(f"{path} lacks network parameters {not_loaded[:5]}: it was written for another model "
                          "or model_kwargs")
    state = {k: v for k, v in data.items() if k not in _SCHEDULE_KEYS}
    own = {p.name: p for p in optimizer.get_parameters()}
    state.update({k: ms.Parameter(own[k].value(), name=k) for k in _SCHEDULE_KEYS if k in own})  # kept as they are
    ms.load_param_into_net(optimizer, state, strict_load=True)
    if ema is not None:
        ms.load_param_into_net(ema, data)
    if scaler is not None and "loss_scale.scale_value" in data:
        scaler.scale_value.set_data(data["loss_scale.scale_value"].data)
        scaler.counter.set_data(data["loss_scale.counter"].data)


def resume_position(path: str, data: dict, steps_per_epoch: int, accum: int, epochs: int) -> dict:
    """Where a training checkpoint continues this run: ``{'epoch', 'step', 'best_acc', 'finished', 'done',
    'saved_epochs', 'notes'}`` (``notes``: lines saying what the run changed, e.g. a schedule recomputed for more
    epochs or a new batch size). A run can take more (or fewer) epochs from any checkpoint, and another batch size,
    device count or accumulation from a checkpoint written at the end of an epoch; anything else is a
    :class:`ResumeError` naming what differs."""
    if "train.epoch" not in data:
        raise ResumeError(f"{path} is not a convattn training checkpoint (no 'train.epoch'); to start from these "
                          "weights use --pretrained instead of --resume")

    def read(key, default=None):
        if key not in data:
            return default
        value = data[key]
        return float(value.asnumpy()) if hasattr(value, "asnumpy") else float(value)

    epoch, step, gstep = int(read("train.epoch")), int(read("train.step", 0)), int(read("train.global_step", 0))
    saved_accum = int(read("train.accumulation_steps", 1))
    best = read("train.best_acc", -1.0)
    saved_spe = read("train.steps_per_epoch")
    saved_epochs = read("train.epochs")
    lr = data.get("learning_rate")
    if saved_spe is None:  # written before the key existed: same length as this run, or the epoch's end
        saved_spe = steps_per_epoch
        if gstep != (epoch - 1) * (steps_per_epoch // accum) + step // saved_accum and step and \
                gstep == epoch * (step // saved_accum):
            saved_spe = step
    saved_spe = int(saved_spe)
    if saved_epochs is None and lr is not None and saved_spe:
        saved_epochs = round(int(lr.shape[0]) / max(saved_spe // saved_accum, 1))
    at_end = step >= saved_spe
    notes = []
    if not at_end:
        if step % accum:
            raise ResumeError(f"{path} stops after micro-batch {step} of its epoch, inside an accumulation window of "
                              f"{accum} micro-batches (a partial gradient sum is never saved); resume from a "
                              f"checkpoint written at a window boundary, or with --accumulation_steps {saved_accum}")
        if saved_accum != accum or saved_spe != steps_per_epoch:
            what = (f"accumulation_steps {saved_accum} (this run: {accum})" if saved_accum != accum else
                    f"{saved_spe} micro-batches per epoch (this run: {steps_per_epoch}; batch_size or the device "
                    f"count changed)")
            raise ResumeError(f"{path} stops inside epoch {epoch} (micro-batch {step}) of a run with {what}: the rest "
                              f"of that epoch cannot be replayed. Resume with the run's settings, or from the "
                              f"checkpoint at the end of epoch {epoch - 1} or {epoch}")
        start_epoch, start_step = epoch, step
    else:
        start_epoch, start_step = epoch + 1, 0
        if saved_spe != steps_per_epoch or saved_accum != accum:
            notes.append(f"note: {steps_per_epoch} micro-batches per epoch with accumulation_steps {accum} (the run "
                         f"had {saved_spe} with {saved_accum}): batch size, device count or accumulation changed; "
                         f"the lr schedule is recomputed for this run's length")
    done = epoch if at_end else epoch - 1
    finished = start_epoch > epochs
    if saved_epochs is not None and int(saved_epochs) != epochs and not finished:
        notes.append(f"note: the lr schedule is recomputed for {epochs} epochs (the run was planned for "
                     f"{int(saved_epochs)}); it continues from epoch {start_epoch}")
    return {"epoch": start_epoch, "step": start_step, "best_acc": best, "finished": finished, "done": done,
            "saved_epochs": None if saved_epochs is None else int(saved_epochs), "notes": notes}


def _describe_init(cfg: Config, report: dict) -> str:
    """One line: where the initial weights came from, and the classifier left out (a new class count)."""
    src = report.get("source") or {}
    where = (f"{cfg.model}'s official weights {src.get('file')} (sha256 {str(src.get('sha256'))[:12]}..., official "
             f"top-1 {src.get('top1')})" if src.get("kind") == "official" else str(cfg.pretrained))
    head = report.get("skipped_classifier") or []
    return (f"initialised from {where}: {report['loaded']} tensors"
            + (f"; classifier {', '.join(head)} re-initialised for {cfg.num_classes} classes" if head else ""))


def _prepare(cfg: Config):
    """Everything before the first step: context, data, model, optimizer, train step, resume. Returns
    (state, make_train, make_val, mixup, train_step), or None when ``--resume`` finds the run already finished.

    Nothing of the run folder is written before every check has passed (a failed start leaves config.yaml,
    class_names.json and the checkpoints as they were)."""
    from ..data import Mixup, resolve_data_cfg
    from ..models import get_model_cfg
    from ..models.helpers import read_checkpoint

    rank, size = setup_context(cfg)
    distributed = size > 1
    if rank == 0:
        check_writable_dir(cfg.ckpt_dir, "checkpoint folder (ckpt_dir)")
    prepare_data_dir(cfg, rank)
    data_cfg = resolve_data_cfg(cfg, get_model_cfg(cfg.model))
    make_train, make_val, class_to_idx = build_loaders(cfg, data_cfg, rank, size)
    per_rank = make_train.num_samples // size
    if per_rank < cfg.batch_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set ({make_train.num_samples} "
                          f"images{f' over {size} devices: {per_rank} each' if size > 1 else ''}): no full batch; "
                          f"lower batch_size")
    steps_per_epoch = make_train(0).get_dataset_size()
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(f"the training set gives no full batch of {cfg.batch_size} per device; lower batch_size")
    # gradient accumulation: an epoch is steps_per_epoch micro-batches, opt_steps optimizer steps (the lr schedule,
    # ckpt_steps and the checkpoints' global step count optimizer steps); a last incomplete window is not trained
    accum = cfg.accumulation_steps
    if steps_per_epoch < accum:
        raise ConfigError(f"accumulation_steps {accum} exceeds the {steps_per_epoch} micro-batches of "
                          f"{cfg.batch_size} per device in an epoch; lower accumulation_steps or batch_size")
    dropped = steps_per_epoch % accum
    steps_per_epoch -= dropped
    opt_steps = steps_per_epoch // accum
    global_batch = cfg.batch_size * size * accum
    total_steps = opt_steps * cfg.epochs
    lrs = build_lr_schedule(cfg, opt_steps, global_batch)

    # ---- resume: the checkpoint is read and its position checked before the network is built
    manager = CheckpointManager(cfg.ckpt_dir, cfg.model, cfg.keep_checkpoint_max)
    start_epoch, start_step, best_acc, resume_data, resume_path = 1, 0, -1.0, None, None
    if cfg.resume:
        resume_path = manager.latest() if cfg.resume == "auto" else cfg.resume
        if resume_path is None:
            _print(f"--resume auto: no checkpoint of {cfg.model} in {cfg.ckpt_dir}; starting from scratch", rank)
        else:
            resume_data = read_checkpoint(resume_path)
            pos = resume_position(resume_path, resume_data, steps_per_epoch, accum, cfg.epochs)
            if pos["finished"]:
                _print(f"{cfg.ckpt_dir}: the run is finished ({resume_path} is the end of epoch {pos['done']} of "
                       f"{pos['saved_epochs'] or pos['done']}; best top-1 {pos['best_acc']:.2f}%); nothing to train. "
                       f"To train longer pass --epochs N with N > {pos['done']}", rank)
                return None
            start_epoch, start_step, best_acc = pos["epoch"], pos["step"], pos["best_acc"]

    net = build_model(cfg)
    if cfg.recompute:
        from ..models import set_recompute
        _print(f"recompute: {set_recompute(net)} blocks of {cfg.model} rebuilt in the backward pass", rank)
    check = getattr(net, "check_input_size", None)
    if check is not None:  # before any graph is compiled or data loaded (image_size: the side of a square)
        check(data_cfg["image_size"], data_cfg["image_size"])
    if net.load_report is not None:
        _print(_describe_init(cfg, net.load_report), rank)
    n_params = count_parameters(net)
    optimizer = create_optimizer(cfg, net.trainable_params(), lrs)
    ema = EMA(net, cfg.ema_decay) if cfg.ema else None
    if cfg.deterministic and cfg.mode == 0 and _has_stochastic_layers(net):
        _print("warning: deterministic GRAPH mode cannot rewind the drop-path/dropout RNG on resume; "
               "use --mode 1 or drop_path_rate 0 for bit-exact resume", rank)

    reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=size) if distributed else None
    # AMP and the dynamic loss scale are applied here; all-reduce, unscale, overflow check, clipping, optimizer and
    # EMA act once per window on the mean gradient
    train_step = build_train_step(net, SoftTargetCrossEntropy(), optimizer, amp_level=cfg.amp_level,
                                  amp_dtype=cfg.amp_dtype, loss_scale=cfg.loss_scale, accumulation_steps=accum,
                                  reducer=reducer, clip=cfg.clip_grad, ema=ema, jit=cfg.mode == 0)
    net, scaler = train_step.network, train_step.scaler

    if resume_data is not None:
        _load_state(resume_path, resume_data, net, optimizer, ema, scaler)
        position = (start_epoch - 1) * opt_steps + start_step // accum  # in this run's schedule
        optimizer.global_step.set_data(ms.Tensor([position], optimizer.global_step.dtype))
        _print(f"resumed from {resume_path}: epoch {start_epoch}, step {start_step}, global step {position}, "
               f"lr {lrs[min(position, total_steps - 1)]:.3g}", rank)
        for note in pos["notes"]:
            _print(note, rank)

    # every check passed: now the run folder is written
    if rank == 0:
        os.makedirs(cfg.ckpt_dir, exist_ok=True)
        from ..data.class_names import write_class_names
        write_class_names(cfg.ckpt_dir, class_to_idx)  # the training tree's class names, for scripts/infer.py
        shown = effective_config(cfg, data_cfg, net)
        dump_config(shown, os.path.join(cfg.ckpt_dir, "config.yaml"))
        _print(f"effective config (saved as {os.path.join(cfg.ckpt_dir, 'config.yaml')}):\n"
               + format_config(shown).rstrip(), rank)

    mixup = Mixup(cfg.mixup, cfg.cutmix, cfg.mixup_prob, cfg.mixup_switch_prob, cfg.num_classes,
                  cfg.label_smoothing, cfg.label_smoothing_mode)
    steps_text = (f"{steps_per_epoch} steps/epoch" if accum == 1 else
                  f"{opt_steps} optimizer steps/epoch of {accum} micro-batches"
                  + (f" (the last {dropped} micro-batches of each epoch do not fill a window and are skipped)"
                     if dropped else ""))
    params_text = format_params(n_params[0] / 1e6, n_params[1] / 1e6, " M")  # total, and trainable where it differs
    _print(f"training {cfg.model} ({params_text} params) on {cfg.device_target} x{size}: "
           f"{steps_text} x {cfg.epochs} epochs, global batch {global_batch} = {cfg.batch_size} per device x {size} "
           f"device{'s' if size > 1 else ''} x {accum} accumulation step{'s' if accum > 1 else ''}"
           f"{' (lr_scale linear: lr x %g)' % (global_batch / cfg.lr_base_batch) if cfg.lr_scale == 'linear' else ''}, "
           f"peak lr {lrs.max():.3g}, opt {cfg.opt}, amp {cfg.amp_level}", rank)
    if accum > 1 and any(isinstance(c, (nn.BatchNorm1d, nn.BatchNorm2d)) for _, c in net.cells_and_names()):
        _print(f"note: BatchNorm normalises each micro-batch of {cfg.batch_size} images per device (statistics are "
               f"not accumulated over the {accum} micro-batches of a window)", rank)

    state = TrainState(cfg=cfg, rank=rank, size=size, net=net, optimizer=optimizer, ema=ema, scaler=scaler, lrs=lrs,
                       manager=manager, params=_state_params(net, optimizer, ema, scaler),
                       steps_per_epoch=steps_per_epoch, opt_steps=opt_steps, accum=accum, start_epoch=start_epoch,
                       start_step=start_step, best_acc=best_acc, last_ckpt=manager.latest())
    return state, make_train, make_val, mixup, train_step


def train(cfg: Config, callbacks: Sequence[Callback] = ()) -> dict:
    """Run training as configured; returns the final metrics dict.

    ``callbacks``: extra :class:`~convattn.engine.callbacks.Callback` objects, called after the trainer's own
    (evaluation, EMA weights, checkpoints, logging) at every hook. Raises :class:`TrainingDiverged` on a
    non-finite loss, leaving the last good checkpoint in place."""
    extra = CallbackList([callbacks] if isinstance(callbacks, Callback) else callbacks)  # checked before set-up
    prepared = _prepare(cfg)
    if prepared is None:  # --resume on a finished run
        return {"finished": True}
    state, make_train, make_val, mixup, train_step = prepared

    def validate_net(s):
        return evaluate(s.net, make_val(), cfg.num_classes, s.distributed)

    own = ([EvaluateCallback(validate_net)] + ([EMAWeightsCallback(state.ema)] if state.ema is not None else [])
           + [CheckpointCallback(), LoggingCallback(weights_digest)])
    hooks = state.callbacks = CallbackList(own + extra.callbacks)
    state.net.set_train(True)
    run_start = time.time()
    hooks.on_train_begin(state)
    arm, restore = _stop_signals_raise_interrupt()
    try:
        for epoch in range(state.start_epoch, cfg.epochs + 1):
            state.epoch = epoch
            dataset = make_train(epoch)
            state.epoch_start = time.time()
            hooks.on_epoch_begin(state)
            first = state.start_step if epoch == state.start_epoch else 0
            for step, (images, labels) in enumerate(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True),
                                                    start=1):
                if step > state.steps_per_epoch:
                    break
                if step <= first:
                    continue  # replays the augmentation RNG of the batches trained before the interruption
                arm()
                _train_one(state, train_step, mixup, step, images, labels)
            state.epoch_time = time.time() - state.epoch_start
            hooks.on_epoch_end(state)
            _report_bad_images(make_train.bad_log, f"epoch {epoch}", state.rank)
    except KeyboardInterrupt:
        _print(f"interrupted at epoch {state.epoch}, step {state.step}; last checkpoint: "
               f"{state.last_ckpt or '(none written yet)'}; continue with: {resume_command()}", state.rank)
        raise
    finally:
        restore()
    state.total_time = time.time() - run_start
    hooks.on_train_end(state)
    return dict(state.metrics, best_top1=state.best_acc, time_s=state.total_time)


_ARMED = []  # the arm() of the running train(), for evaluate() (its iterator re-registers the C++ handler too)


def _rearm_interrupt() -> None:
    if _ARMED:
        _ARMED[-1]()


def _stop_signals_raise_interrupt():
    """Ctrl-C (and SIGTERM, as a scheduler stops a job) raise KeyboardInterrupt in the loop, so the trainer can say
    where the run stopped. MindSpore's runtime installs its own SIGINT handler at every graph call, which ends the
    process with SIGTERM; catching SIGTERM covers both. Returns (arm, restore): arm before each step, restore at the
    end."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return (lambda: None), (lambda: None)

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.getsignal(signal.SIGTERM)

    def arm():  # the dataset iterators re-register a C++ SIGTERM handler: armed again before every step
        signal.signal(signal.SIGTERM, interrupt)

    def restore():
        _ARMED.remove(arm)
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    arm()
    _ARMED.append(arm)
    return arm, restore


def _report_bad_images(log, what: str, rank: int) -> None:
    """One line (``what``: the epoch, or the evaluation) when ``bad_images: skip`` replaced undecodable files since
    the last report (training and validation share the log; the metrics count the replacements)."""
    events = log.take()
    if events:
        files = sorted({p for p, _ in events})
        _print(f"{what}: {len(events)} undecodable image read(s) skipped and replaced by the next image "
               f"({len(files)} file(s), e.g. {files[0]}); set bad_images: stop to stop at the first, or fix the "
               f"files ({log.total} so far)", rank, all_ranks=True)


def resume_command(argv: Optional[Sequence[str]] = None) -> str:
    """The command line that continues this run: the one that started it, with ``--resume auto``."""
    import shlex
    import sys
    argv = list(sys.argv if argv is None else argv)
    out, skip = [], False
    for tok in argv[1:]:
        if skip:
            skip = False
            continue
        if tok in ("--resume", "--debug"):
            skip = tok == "--resume"
            continue
        if tok.startswith("--resume="):
            continue
        out.append(tok)
    prog = argv[0] if argv else "scripts/train.py"
    head = ["python", prog] if prog.endswith(".py") else [os.path.basename(prog)]
    return shlex.join(head + out + ["--resume", "auto"])


def _train_one(state: TrainState, train_step, mixup, step: int, images, labels) -> None:
    """One micro-batch: position, seeds, mixup, on_step_begin, the train step, the divergence check, on_step_end."""
    cfg = state.cfg
    state.step = step
    state.global_step = gstep = (state.epoch - 1) * state.steps_per_epoch + step  # micro-batches so far
    state.window_end = step % state.accum == 0
    state.opt_step = gstep // state.accum  # optimizer steps once this micro-batch is done
    if cfg.deterministic and cfg.mode == 1:
        ms.set_seed(cfg.seed * 1000003 + gstep)
    rng = np.random.RandomState((cfg.seed * 1000003 + gstep * state.size + state.rank) % (2 ** 32))
    state.images, state.targets = mixup(images, labels, rng)
    state.callbacks.on_step_begin(state)
    t0 = time.time()
    loss, _ = train_step(ms.Tensor(state.images), ms.Tensor(state.targets), state.window_end)
    state.loss = float(loss.asnumpy())
    state.step_time = time.time() - t0
    if not math.isfinite(state.loss):
        msg = (f"loss is {state.loss} at epoch {state.epoch} step {step} (global step {gstep}); training stopped. "
               f"The last good checkpoint is {state.last_ckpt or '(none written yet)'} and was left intact. "
               "Lower the learning rate, enable clip_grad, or check the data.")
        _print(msg, state.rank, all_ranks=True)
        raise TrainingDiverged(msg)
    state.callbacks.on_step_end(state)


def _has_stochastic_layers(net) -> bool:
    from ..layers import DropPath
    for _, cell in net.cells_and_names():
        if isinstance(cell, DropPath) and cell.drop_prob > 0:
            return True
        if isinstance(cell, nn.Dropout) and getattr(cell, "p", 0) and cell.p > 0:
            return True
    return False


def run_eval(cfg: Config) -> dict:
    """Evaluate ``cfg.ckpt`` (EMA weights when the checkpoint has them and ``ema: true``), or ``cfg.pretrained``
    (the official weights, or an official .pth), on the val tree."""
    from ..data import resolve_data_cfg
    from ..models import get_model_cfg
    if cfg.ckpt is None and cfg.pretrained is None:
        raise ValueError("eval needs weights: pass --ckpt PATH or --pretrained")
    weights = cfg.ckpt if cfg.ckpt is not None else cfg.pretrained
    rank, size = setup_context(cfg)
    prepare_data_dir(cfg, rank)
    data_cfg = resolve_data_cfg(cfg, get_model_cfg(cfg.model))
    _, make_val, _ = build_loaders(cfg, data_cfg, rank, size) if cfg.dataset == "digits" or os.path.isdir(
        os.path.join(cfg.data_dir, cfg.train_split)) else (None, None, None)
    if make_val is None:
        make_val = _val_only_loader(cfg, data_cfg, rank, size)
    from ..models.helpers import CheckpointMismatchError, UnreadableCheckpointError
    try:  # any formulation's checkpoint (e.g. trained on GPU, evaluated on Ascend); deploy: the one entry point
        net = build_model(cfg, pretrained=weights, load_args={"classifier": None, "use_ema": cfg.ema},
                          deploy=bool(cfg.deploy))
    except UnreadableCheckpointError:
        raise
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(str(exc), hint="check that --model, --model_kwargs and --num_classes match the "
                                      "run that wrote the checkpoint (or pass -c RUN/config.yaml)") from None
    except ValueError as exc:
        if cfg.deploy and "no re-parameterisation" in str(exc):
            raise ValueError(f"--deploy: {cfg.model} has no switch_to_deploy() re-parameterisation; drop --deploy") \
                from None
        raise
    use_ema = bool((net.load_report or {}).get("ema"))
    if cfg.deploy:
        _print(f"switched to the deploy form: {', '.join(net.deploy_report)}", rank)
    net = mixed_precision(net, cfg.amp_level, cfg.amp_dtype)
    t0 = time.time()
    metrics = evaluate(net, make_val(), cfg.num_classes, size > 1)
    _report_bad_images(make_val.bad_log, "eval", rank)
    shown = cfg.ckpt if cfg.ckpt is not None else (
        f"official weights ({net.load_report['source']['checkpoint']})" if weights is True else weights)
    _print(f"eval {cfg.model} {shown}{' (EMA weights)' if use_ema else ''}{' (deploy form)' if cfg.deploy else ''} on {metrics['n']} images: "
           f"top-1 {metrics['top1']:.2f}% top-5 {metrics['top5']:.2f}% loss {metrics['loss']:.4f} "
           f"({time.time() - t0:.1f}s)", rank)
    return metrics


def _val_only_loader(cfg, data_cfg, rank, size):
    from ..data import BadImageLog, create_loader, eval_transforms

    bad_log = BadImageLog()

    def make_val():
        tf = eval_transforms(data_cfg["image_size"], data_cfg["mean"], data_cfg["std"], data_cfg["interpolation"],
                             data_cfg["crop_pct"])
        shards = dict(num_shards=size, shard_id=rank) if size > 1 else {}
        dataset, c2i, _ = create_loader(os.path.join(cfg.data_dir, cfg.val_split), tf, cfg.batch_size, False, False,
                                        1 if cfg.deterministic else cfg.num_parallel_workers, seed=cfg.seed,
                                        bad_images=cfg.bad_images, bad_log=bad_log, **shards)
        if len(c2i) != cfg.num_classes:
            raise ConfigError(f"val tree has {len(c2i)} classes but num_classes is {cfg.num_classes}")
        return dataset
    make_val.bad_log = bad_log
    return make_val
