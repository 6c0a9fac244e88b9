"""Optimizers with parameter groups: no weight decay on norms, biases and layer scale."""
from typing import List, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn

__all__ = ["no_decay", "param_groups", "create_optimizer"]

_NO_DECAY_KEYS = ("layer_scale", "gamma", "beta", "bias", "norm", "pos_embed", "cls_token", "rel_pos")


def no_decay(param) -> bool:
    """True for parameters that get no weight decay: every 1-D (or 0-D) tensor (biases, norm scales and
    shifts, layer scale) and any parameter whose name marks it as a norm/bias/layer-scale/position table."""
    name = param.name.lower()
    return len(param.shape) <= 1 or any(k in name for k in _NO_DECAY_KEYS)


def param_groups(params: Sequence, weight_decay: float) -> List[dict]:
    params = list(params)
    decay = [p for p in params if not no_decay(p)]
    skip = [p for p in params if no_decay(p)]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if skip:
        groups.append({"params": skip, "weight_decay": 0.0})
    groups.append({"order_params": params})
    return groups


def create_optimizer(cfg, params: Sequence, lr_schedule: np.ndarray):
    """AdamW or SGD-momentum over ``params`` with the per-step ``lr_schedule`` (dynamic lr)."""
    lr = ms.Tensor(np.asarray(lr_schedule, dtype=np.float32))
    groups = param_groups(params, cfg.weight_decay)
    if cfg.opt == "adamw":
        return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=cfg.betas[0], beta2=cfg.betas[1], eps=cfg.eps)
    if cfg.opt == "momentum":
        return nn.Momentum(groups, learning_rate=lr, momentum=cfg.momentum, use_nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.opt!r}")
