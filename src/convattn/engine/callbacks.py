"""Training-loop callbacks: what happens around the loop's steps (logging, checkpoints, evaluation, EMA weights).

:func:`convattn.engine.trainer.train` runs a short loop -- read a batch, mix it, take a train step, stop on a
non-finite loss -- and calls the hooks of a list of :class:`Callback` objects at fixed points. Every hook receives
the one :class:`TrainState` of the run, which holds the run's objects (config, network, optimizer, EMA, checkpoint
manager, lr table) and its position (epoch, step, loss, metrics); callbacks read it and may write to it.

Hook order per run::

    on_train_begin
    for each epoch:  on_epoch_begin
        for each micro-batch:  on_step_begin (state.images / state.targets may be replaced) -> train step
                               -> on_step_end
        on_epoch_end   (an evaluation inside it fires on_eval_begin / on_eval_end)
    on_train_end       (not reached when training diverges: TrainingDiverged is raised instead)

The trainer's own callbacks run first, in this order: :class:`EvaluateCallback`, :class:`EMAWeightsCallback` (only
with ``ema: true``), :class:`CheckpointCallback`, :class:`LoggingCallback`; the ``callbacks=`` passed to ``train``
run after them, so at ``on_step_end`` a checkpoint due at that step is already written and at ``on_epoch_end`` the
epoch's evaluation, checkpoints and log row are done.
"""
import os
from typing import Callable, Dict, List, Optional, Sequence

__all__ = ["Callback", "CallbackList", "TrainState", "EvaluateCallback", "EMAWeightsCallback", "CheckpointCallback",
           "LoggingCallback", "log_line"]


def log_line(msg: str, rank: int = 0, all_ranks: bool = False) -> None:
    """Print ``msg`` on rank 0 (on every rank, prefixed ``[rank r]``, with ``all_ranks``)."""
    if rank == 0 or all_ranks:
        prefix = f"[rank {rank}] " if all_ranks else ""
        print(prefix + msg, flush=True)


class TrainState:
    """The run as the callbacks see it.

    Fixed for the run: ``cfg``, ``rank``, ``size`` (data-parallel group size), ``net``, ``optimizer``, ``ema`` (an
    :class:`~convattn.engine.ema.EMA` or None), ``scaler`` (loss scaler or None), ``lrs`` (lr per optimizer step),
    ``manager`` (:class:`~convattn.engine.checkpoint.CheckpointManager`), ``params`` (what a checkpoint holds),
    ``steps_per_epoch`` (micro-batches trained per epoch), ``opt_steps`` (optimizer steps per epoch), ``accum``
    (micro-batches per optimizer step), ``start_epoch`` / ``start_step`` (where this run starts; after a resume
    the first ``start_step`` micro-batches of ``start_epoch`` are skipped), ``callbacks`` (the
    :class:`CallbackList` being run).

    Position, updated by the loop: ``epoch`` (1-based), ``step`` (micro-batch in the epoch, 1-based),
    ``global_step`` (micro-batches since the start of training), ``opt_step`` (optimizer steps once this
    micro-batch is done), ``window_end`` (this micro-batch completes an optimizer step), ``images`` / ``targets``
    (the mixed numpy batch, at ``on_step_begin`` before the step), ``loss`` (float) and ``step_time`` (seconds)
    after it, ``epoch_start`` / ``epoch_time`` (seconds of training in the epoch, set before ``on_epoch_end``),
    ``total_time`` (set before ``on_train_end``).

    Results, written by the callbacks: ``metrics`` (the latest evaluation: top1, top5, loss, n), ``epoch_metrics``
    (this epoch's evaluation or None), ``best_acc`` (best top-1 so far, -1 before any), ``is_best`` (this epoch's
    evaluation set a new best), ``last_ckpt`` (the newest periodic checkpoint written, or found at the start).
    """

    def __init__(self, **fields) -> None:
        self.epoch = self.step = self.global_step = self.opt_step = 0
        self.window_end = False
        self.images = self.targets = None
        self.loss = float("nan")
        self.step_time = self.epoch_start = self.epoch_time = self.total_time = 0.0
        self.metrics: Dict = {}
        self.epoch_metrics: Optional[Dict] = None
        self.is_best = False
        self.best_acc = -1.0
        self.last_ckpt: Optional[str] = None
        self.start_epoch, self.start_step = 1, 0
        self.callbacks: Optional["CallbackList"] = None
        self.__dict__.update(fields)

    @property
    def distributed(self) -> bool:
        return self.size > 1


class Callback:
    """Base class: override the hooks you need (each receives the :class:`TrainState`; return values are ignored)."""

    def on_train_begin(self, state: TrainState) -> None:
        """After set-up and resume, before the first epoch."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """``state.epoch`` is set; the epoch's data loader is built."""

    def on_step_begin(self, state: TrainState) -> None:
        """Before the train step of micro-batch ``state.step``; ``state.images`` / ``state.targets`` (numpy) are
        what the step will use and may be replaced."""

    def on_step_end(self, state: TrainState) -> None:
        """After the train step; ``state.loss`` is finite (a non-finite loss stops training before this hook)."""

    def on_eval_begin(self, state: TrainState) -> None:
        """Just before an evaluation of ``state.net`` (fired by :class:`EvaluateCallback`)."""

    def on_eval_end(self, state: TrainState) -> None:
        """Just after it; ``state.metrics`` holds the result."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After the epoch's last micro-batch; ``state.epoch_time`` is set."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch; ``state.total_time`` is set."""


_HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_begin", "on_step_end", "on_eval_begin", "on_eval_end",
          "on_epoch_end", "on_train_end")


class CallbackList(Callback):
    """Calls each hook on every callback, in list order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks: List[Callback] = list(callbacks)
        for cb in self.callbacks:
            missing = [h for h in _HOOKS if not callable(getattr(cb, h, None))]
            if missing:
                raise TypeError(f"{type(cb).__name__} is not a training callback (no {', '.join(missing)}); "
                                "subclass convattn.engine.callbacks.Callback")

    def _fire(self, hook: str, state: TrainState) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(state)

    def on_train_begin(self, state):
        self._fire("on_train_begin", state)

    def on_epoch_begin(self, state):
        self._fire("on_epoch_begin", state)

    def on_step_begin(self, state):
        self._fire("on_step_begin", state)

    def on_step_end(self, state):
        self._fire("on_step_end", state)

    def on_eval_begin(self, state):
        self._fire("on_eval_begin", state)

    def on_eval_end(self, state):
        self._fire("on_eval_end", state)

    def on_epoch_end(self, state):
        self._fire("on_epoch_end", state)

    def on_train_end(self, state):
        self._fire("on_train_end", state)


class EvaluateCallback(Callback):
    """At the end of every ``cfg.val_interval``-th epoch and of the last one: ``run(state)`` -> metrics dict
    (top1, top5, loss, n) between ``on_eval_begin`` and ``on_eval_end``; keeps the best top-1."""

    def __init__(self, run: Callable[[TrainState], Dict]) -> None:
        self.run = run

    def on_epoch_begin(self, state):
        state.epoch_metrics, state.is_best = None, False

    def on_epoch_end(self, state):
        cfg = state.cfg
        if not ((cfg.val_interval and state.epoch % cfg.val_interval == 0) or state.epoch == cfg.epochs):
            return
        state.callbacks.on_eval_begin(state)
        state.metrics = state.epoch_metrics = self.run(state)
        state.callbacks.on_eval_end(state)
        state.is_best = state.metrics["top1"] > state.best_acc
        if state.is_best:
            state.best_acc = state.metrics["top1"]


class EMAWeightsCallback(Callback):
    """Evaluation runs on the EMA averages: they are swapped into the network for it and swapped back right after,
    so every checkpoint (the best one included) holds the raw weights under their own names and the averages under
    ``ema.*``. (The averages themselves are updated inside the train step, once per optimizer step.)"""

    def __init__(self, ema) -> None:
        self.ema = ema

    def on_eval_begin(self, state):
        self.ema.swap()

    def on_eval_end(self, state):
        self.ema.swap()


class CheckpointCallback(Callback):
    """Rank 0 writes, through ``state.manager`` (atomic writes, ``<model>-<epoch>_<step>.ckpt`` keeping the last
    ``keep_checkpoint_max``, and ``<model>_best.ckpt``):

    * mid-epoch, every ``cfg.ckpt_steps`` optimizer steps (at a window boundary, not at the epoch's last step);
    * ``<model>_best.ckpt`` when the epoch's evaluation set a new best top-1;
    * at the end of every ``cfg.ckpt_interval``-th epoch and of the last one.

    A checkpoint's metadata: ``train.epoch``, ``train.step`` (micro-batches of the epoch), ``train.global_step``
    (optimizer steps), ``train.best_acc``, ``train.accumulation_steps``, ``train.steps_per_epoch`` (micro-batches)
    and ``train.epochs`` (the run's planned length; what ``--resume`` compares to say what changed)."""

    def meta(self, state: TrainState, epoch: int, step: int, opt_step: int) -> Dict:
        # "train." prefix: the optimizer owns a parameter named global_step
        return {"train.epoch": epoch, "train.step": step, "train.global_step": opt_step,
                "train.best_acc": float(state.best_acc), "train.accumulation_steps": state.accum,
                "train.steps_per_epoch": state.steps_per_epoch, "train.epochs": state.cfg.epochs}

    def on_step_end(self, state):
        every = state.cfg.ckpt_steps
        if (every and state.window_end and state.opt_step % every == 0 and state.step < state.steps_per_epoch
                and state.rank == 0):
            state.last_ckpt = state.manager.save(state.params, state.epoch, state.step,
                                                 self.meta(state, state.epoch, state.step, state.opt_step))

    def on_epoch_end(self, state):
        if state.rank != 0:
            return
        epoch, end, opt_step = state.epoch, state.steps_per_epoch, state.epoch * state.opt_steps
        if state.is_best:
            state.manager.save_best(state.params, self.meta(state, epoch, end, opt_step))
        if epoch % state.cfg.ckpt_interval == 0 or epoch == state.cfg.epochs:
            state.last_ckpt = state.manager.save(state.params, epoch, end, self.meta(state, epoch, end, opt_step))


class LoggingCallback(Callback):
    """Progress lines (every ``cfg.log_interval`` micro-batches: loss, lr, img/s, ETA; one line per epoch), the
    per-epoch ``train_log.csv`` (rank 0; on resume the rows after the resumed epoch are dropped) and, at the end,
    ``train_curves.png``, the final weights' sha256 and the final metrics."""

    def __init__(self, digest: Callable) -> None:
        self.digest = digest  # net -> hex digest of its weights
        self.log = None
        self.timed_steps, self.timed_secs, self.timing = 0, 0.0, False

    def on_train_begin(self, state):
        from .feedback import EpochLog
        if state.rank == 0:
            self.log = EpochLog(os.path.join(state.cfg.ckpt_dir, "train_log.csv"), resume_epoch=state.start_epoch - 1)

    def on_epoch_begin(self, state):
        self.loss_sum, self.loss_n, self.seen = 0.0, 0, 0

    def on_step_end(self, state):
        from .feedback import format_eta
        cfg = state.cfg
        if self.timing:  # the run's first step compiles: left out of the speed / ETA estimates
            self.timed_steps += 1
            self.timed_secs += state.step_time
        self.timing = True
        self.loss_sum += state.loss
        self.loss_n += 1
        self.seen += state.images.shape[0]
        if state.step % cfg.log_interval == 0 or state.step == state.steps_per_epoch:
            per_step = self.timed_secs / self.timed_steps if self.timed_steps else state.step_time
            eta = per_step * (state.steps_per_epoch * cfg.epochs - state.global_step)
            log_line(f"epoch {state.epoch}/{cfg.epochs} step {state.step}/{state.steps_per_epoch} "
                     f"loss {state.loss:.4f} lr {state.lrs[(state.global_step - 1) // state.accum]:.3e} "
                     f"{cfg.batch_size * state.size / max(per_step, 1e-9):.1f} img/s ETA {format_eta(eta)}",
                     state.rank)

    def on_epoch_end(self, state):
        cfg, epoch, t = state.cfg, state.epoch, state.epoch_time
        train_loss = self.loss_sum / max(self.loss_n, 1)
        done = f"epoch {epoch}/{cfg.epochs} done in {t:.1f}s: train loss {train_loss:.4f}"
        row = {"epoch": epoch, "train_loss": f"{train_loss:.6f}", "lr": f"{state.lrs[epoch * state.opt_steps - 1]:.6g}",
               "epoch_time_s": f"{t:.2f}", "images_per_s": f"{self.seen * state.size / max(t, 1e-9):.1f}"}
        m = state.epoch_metrics
        if m is not None:
            row.update(val_loss=f"{m['loss']:.6f}", val_top1=f"{m['top1']:.3f}", val_top5=f"{m['top5']:.3f}")
            done += (f", val top-1 {m['top1']:.2f}% top-5 {m['top5']:.2f}% loss {m['loss']:.4f}"
                     f"{' (best)' if state.is_best else ''}")
        log_line(done, state.rank)
        if self.log is not None:
            self.log.append(row)

    def on_train_end(self, state):
        from .feedback import plot_curves
        cfg = state.cfg
        if self.log is not None and self.log.rows:
            png = plot_curves(self.log.rows, os.path.join(cfg.ckpt_dir, "train_curves.png"), title=f"{cfg.model}")
            log_line(f"wrote {os.path.join(cfg.ckpt_dir, 'train_log.csv')} and {png}", state.rank)
        log_line(f"final weights sha256 {self.digest(state.net)}", state.rank, all_ranks=state.distributed)
        m = state.metrics
        if m:
            log_line(f"training finished in {state.total_time:.1f}s: final val top-1 {m['top1']:.2f}% top-5 "
                     f"{m['top5']:.2f}% loss {m['loss']:.4f}; best top-1 {state.best_acc:.2f}%", state.rank)
