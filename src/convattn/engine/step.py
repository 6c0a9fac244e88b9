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
"""
from typing import Callable, Optional

import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple

__all__ = ["TrainStep"]


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
    """

    def __init__(self, forward: Callable, optimizer: nn.Optimizer, accumulation_steps: int = 1,
                 reducer: Optional[nn.Cell] = None, scaler=None, clip: float = 0.0, ema: Optional[nn.Cell] = None,
                 jit: bool = True) -> None:
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = n = int(accumulation_steps)
        grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
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

        wrap = ms.jit if jit else (lambda f: f)
        self._single = wrap(single) if n == 1 else None
        self._accumulate = wrap(accumulate) if n > 1 else None
        self._last = wrap(last) if n > 1 else None

    def __call__(self, images, targets, apply: bool = True):
        if self.accumulation_steps == 1:
            if not apply:
                raise ValueError("apply=False needs accumulation_steps > 1")
            return self._single(images, targets)
        if apply:
            return self._last(images, targets)
        return self._accumulate(images, targets), None
