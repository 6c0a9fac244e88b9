"""The train step: gradients of one micro-batch, optionally accumulated over ``accumulation_steps`` of them.

With ``accumulation_steps = N`` the optimizer steps once per N micro-batches on the mean of their gradients, so
N micro-batches of ``b`` images give the update of one batch of ``N * b`` (exactly, up to float summation order,
for a network without batch statistics). What acts once per window, on the accumulated gradient:

* the data-parallel all-reduce (``reducer``; one communication per optimizer step, not per micro-batch);
* loss-scale unscaling, the overflow check and the dynamic loss-scale update (a window with an overflow in any
  micro-batch is skipped as a whole; the scale never changes inside a window);
* global-norm gradient clipping;
* the optimizer update (and so the learning-rate schedule, which the optimizer indexes with its own step count)
  and the EMA update.

What does **not** accumulate: BatchNorm normalises with, and updates its running statistics from, each
micro-batch of ``b`` images; a BatchNorm network therefore trains as with per-device batch ``b``, not ``N * b``.

The accumulators are ``accum.<parameter name>`` buffers of the parameters' shape, zeroed after every optimizer
step. They are not checkpointed: the trainer writes checkpoints only at window boundaries.

One training step for the whole zoo: :func:`build_train_step` (network, loss, optimizer, AMP level, loss scale,
accumulation) is what the trainer, the benchmark harness (``--mode train``) and the Ascend audit
(:mod:`convattn.bench.ascend_audit`, which compiles and audits this very step) build, and :func:`mixed_precision`
is the one place AMP is applied. A compiled piece of the step is a :class:`StepGraph` cell: in GRAPH mode it
compiles like any cell (``Cell.compile``; the audit reads that graph, and later calls run it without compiling
again), in PYNATIVE mode it runs under :func:`mindspore.jit`.
"""
from typing import Callable, Dict, Optional

import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple

__all__ = ["TrainStep", "StepGraph", "build_train_step", "mixed_precision", "AMP_DTYPES"]

AMP_DTYPES = {"float16": ms.float16, "bfloat16": ms.bfloat16}


def mixed_precision(net: nn.Cell, amp_level: Optional[str] = "O0", amp_dtype="float16") -> nn.Cell:
    """``net`` under AMP ``amp_level`` (``'O0'``/None: unchanged) in ``amp_dtype`` (``'float16'``, ``'bfloat16'`` or
    the MindSpore dtype): :func:`mindspore.amp.auto_mixed_precision`, which casts the cells in place and returns
    the network with its output cast to float32 (O2: BatchNorm kept in float32 in a cast wrapper). The one place
    the zoo applies AMP. A network already under ``amp_level`` is returned as it is (not cast twice)."""
    if amp_level in (None, "O0"):
        return net
    if getattr(net, "_amp_level", None) == amp_level:
        return net
    dtype = AMP_DTYPES[amp_dtype] if isinstance(amp_dtype, str) else amp_dtype
    return ms.amp.auto_mixed_precision(net, amp_level, dtype=dtype)


class StepGraph(nn.Cell):
    """A compiled piece of a :class:`TrainStep`: ``construct(images, targets)`` calls the step function ``fn``.

    In GRAPH mode it compiles like any cell (:meth:`mindspore.nn.Cell.compile` compiles it without running it, and
    the graph is then the one every call with inputs of the same shapes runs); in PYNATIVE mode a call runs ``fn``
    under :func:`mindspore.jit`. It owns no parameters: ``fn`` reaches the network, the optimizer and the loss
    scale through its closure."""

    def __init__(self, fn: Callable) -> None:
        super().__init__(auto_prefix=False)
        self.fn = fn
        self._jit_fn = ms.jit(fn)

    def construct(self, images, targets):
        return self.fn(images, targets)

    def __call__(self, *args, **kwargs):
        if ms.get_context("mode") == ms.PYNATIVE_MODE:
            return self._jit_fn(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class _Accumulator(nn.Cell):
    def __init__(self, params) -> None:
        super().__init__()
        self.buffers = ParameterTuple([Parameter(ops.zeros(p.shape, p.dtype), name="accum." + p.name,
                                                 requires_grad=False) for p in params])


class TrainStep:
    """``step(images, targets, apply)`` -> ``(loss, finite)``.

    ``forward(images, targets)`` returns the (loss-scaled, when ``scaler`` is given) loss of one micro-batch.
    With ``apply=False`` the micro-batch's gradients are added to the accumulators and ``finite`` is ``None``;
    with ``apply=True`` (every call when ``accumulation_steps == 1``) the window's mean gradient is all-reduced,
    unscaled, checked, clipped and applied. ``loss`` is the unscaled loss of this micro-batch.

    ``jit=True``: the pieces run as :class:`StepGraph` cells (:attr:`graphs`); ``jit=False``: as Python functions
    (PYNATIVE). :meth:`loss` and :meth:`gradients` run the same forward without an update. Built by
    :func:`build_train_step`, which also sets :attr:`network` (the network as trained, AMP applied) and
    :attr:`loss_fn`.
    """

    network: Optional[nn.Cell] = None
    loss_fn: Optional[Callable] = None

    def __init__(self, forward: Callable, optimizer: nn.Optimizer, accumulation_steps: int = 1,
                 reducer: Optional[nn.Cell] = None, scaler=None, clip: float = 0.0, ema: Optional[nn.Cell] = None,
                 jit: bool = True) -> None:
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = n = int(accumulation_steps)
        self.optimizer, self.scaler, self.parameters = optimizer, scaler, optimizer.parameters
        self._forward = forward
        self._grad_fn = grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
        clip = float(clip)
        self.accumulator = _Accumulator(optimizer.parameters) if n > 1 else None
        buffers = self.accumulator.buffers if n > 1 else None
        inv_n = 1.0 / n

        def unscaled(loss):
            return scaler.unscale(loss) if scaler is not None else loss

        def apply(loss, grads):
            if reducer is not None:
                grads = reducer(grads)
            if scaler is not None:
                grads = scaler.unscale(grads)
                finite = ms.amp.all_finite(grads)
                scaler.adjust(finite)
            else:
                finite = ms.Tensor(True)
            if clip > 0:
                grads = ops.clip_by_global_norm(grads, clip)
            if finite:
                loss = ops.depend(loss, optimizer(grads))
                if ema is not None:
                    loss = ops.depend(loss, ema())
            return unscaled(loss), finite

        def single(images, targets):
            loss, grads = grad_fn(images, targets)
            return apply(loss, grads)

        def accumulate(images, targets):
            loss, grads = grad_fn(images, targets)
            added = tuple(ops.assign_add(b, g) for b, g in zip(buffers, grads))
            return ops.depend(unscaled(loss), added)

        def last(images, targets):
            loss, grads = grad_fn(images, targets)
            mean = tuple((b + g) * inv_n for b, g in zip(buffers, grads))
            loss, finite = apply(loss, mean)
            zeroed = tuple(ops.assign(b, ops.zeros_like(b)) for b in buffers)
            return ops.depend(loss, zeroed), finite

        wrap = StepGraph if jit else (lambda f: f)
        self._single = wrap(single) if n == 1 else None
        self._accumulate = wrap(accumulate) if n > 1 else None
        self._last = wrap(last) if n > 1 else None

    @property
    def graphs(self) -> Dict[str, StepGraph]:
        """The compiled pieces by name: ``{'step': ...}`` (``accumulation_steps == 1``), else ``{'accumulate': ...,
        'apply': ...}`` (the micro-batch that only accumulates, the last one of a window). Empty with ``jit=False``."""
        pieces = {"step": self._single, "accumulate": self._accumulate, "apply": self._last}
        return {k: v for k, v in pieces.items() if isinstance(v, StepGraph)}

    def _unscaled(self, value):
        return self.scaler.unscale(value) if self.scaler is not None else value

    def loss(self, images, targets):
        """The unscaled loss of one micro-batch (the step's forward; no gradient, no update)."""
        return self._unscaled(self._forward(images, targets))

    def gradients(self, images, targets):
        """``(loss, grads)`` of one micro-batch, both unscaled, in the order of :attr:`parameters` (the optimizer's);
        nothing is accumulated, reduced or applied."""
        loss, grads = self._grad_fn(images, targets)
        return self._unscaled(loss), self._unscaled(grads)

    def __call__(self, images, targets, apply: bool = True):
        if self.accumulation_steps == 1:
            if not apply:
                raise ValueError("apply=False needs accumulation_steps > 1")
            return self._single(images, targets)
        if apply:
            return self._last(images, targets)
        return self._accumulate(images, targets), None


def build_train_step(net: nn.Cell, loss_fn: Callable, optimizer: nn.Optimizer, amp_level: Optional[str] = "O0",
                     amp_dtype="float16", loss_scale: Optional[float] = 1024.0, accumulation_steps: int = 1,
                     reducer: Optional[nn.Cell] = None, clip: float = 0.0, ema: Optional[nn.Cell] = None,
                     jit: bool = True) -> TrainStep:
    """The training step of the zoo: ``step(images, targets[, apply]) -> (loss, finite)``.

    ``net`` is put under AMP ``amp_level``/``amp_dtype`` by :func:`mixed_precision` (in place; the network as
    trained is ``step.network``); with AMP (any level but O0) and a ``loss_scale`` the loss is scaled by a
    :class:`mindspore.amp.DynamicLossScaler` starting at ``loss_scale`` (halved on an overflow, which skips the
    update; doubled after 1000 finite steps; ``step.scaler``). The forward is ``loss_fn(network(images), targets)``;
    gradients of ``optimizer.parameters`` go through :class:`TrainStep` (``accumulation_steps``, the all-reduce
    ``reducer``, global-norm ``clip``, the ``ema`` update; ``jit``: compiled pieces, see :class:`StepGraph`).
    The trainer, the benchmark harness (``--mode train``) and the Ascend audit all build their step here."""
    network = mixed_precision(net, amp_level, amp_dtype)
    amp = amp_level not in (None, "O0")
    scaler = ms.amp.DynamicLossScaler(float(loss_scale), 2, 1000) if amp and loss_scale else None

    def forward(images, targets):
        loss = loss_fn(network(images), targets)
        return scaler.scale(loss) if scaler is not None else loss

    step = TrainStep(forward, optimizer, accumulation_steps, reducer=reducer, scaler=scaler, clip=clip, ema=ema,
                     jit=jit)
    step.network, step.loss_fn = network, loss_fn
    return step
