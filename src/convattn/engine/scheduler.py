"""Per-step learning-rate schedules (NumPy arrays the optimizer indexes with its global step)."""
import math

import numpy as np

__all__ = ["cosine_lr", "build_lr_schedule"]


def cosine_lr(base_lr: float, min_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
              warmup_lr: float = 0.0, cooldown_epochs: int = 0) -> np.ndarray:
    """Linear warm-up from ``warmup_lr`` to ``base_lr`` over ``warmup_epochs``, then a half cosine from
    ``base_lr`` to ``min_lr`` (per step), then ``cooldown_epochs`` at ``min_lr``. Length: epochs * steps."""
    total = epochs * steps_per_epoch
    warm = int(round(warmup_epochs * steps_per_epoch))
    cool = cooldown_epochs * steps_per_epoch
    decay = max(total - warm - cool, 1)
    lrs = np.empty(total, dtype=np.float64)
    for s in range(total):
        if s < warm:
            lrs[s] = warmup_lr + (base_lr - warmup_lr) * s / warm
        elif s < warm + decay:
            t = (s - warm) / decay
            lrs[s] = min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))
        else:
            lrs[s] = min_lr
    return lrs.astype(np.float32)


def build_lr_schedule(cfg, steps_per_epoch: int, global_batch: int) -> np.ndarray:
    lr = cfg.lr * (global_batch / cfg.lr_base_batch if cfg.lr_scale == "linear" else 1.0)
    min_lr = min(cfg.min_lr, lr)
    if cfg.scheduler == "constant":
        return cosine_lr(lr, lr, steps_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, 0)
    return cosine_lr(lr, min_lr, steps_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, cfg.cooldown_epochs)
