"""Parameter counts as the README and the tools print them: every weight the network holds, and the trainable
ones separately where they differ (e.g. the X-volution deploy form, whose merged weights are frozen)."""
from typing import Tuple

__all__ = ["BN_STATISTICS", "count_parameters", "format_params"]

# BatchNorm running statistics: MindSpore keeps them as Parameters, PyTorch (and the papers' counts) as buffers
BN_STATISTICS = ("moving_mean", "moving_variance")


def count_parameters(net) -> Tuple[int, int]:
    """(total, trainable) element counts. ``total`` counts every parameter of ``net``, frozen ones included, except
    BatchNorm running statistics; ``trainable`` only those with ``requires_grad``."""
    total = trainable = 0
    for p in net.get_parameters():
        if p.name.rsplit(".", 1)[-1] in BN_STATISTICS:
            continue
        n = 1
        for s in p.shape:
            n *= int(s)
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable


def format_params(total_m: float, trainable_m: float, unit: str = "") -> str:
    """``'48.93'`` or, where they differ, ``'48.93 (15.01 trainable)'`` (values in millions; ``unit`` e.g. ' M')."""
    text = f"{total_m:.2f}{unit}"
    if abs(total_m - trainable_m) >= 0.005:
        text += f" ({trainable_m:.2f}{unit} trainable)"
    return text
