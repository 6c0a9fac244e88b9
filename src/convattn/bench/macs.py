"""Count parameters and multiply-accumulates (MACs) of a network by running it once in PyNative mode.

Forward hooks record every ``nn.Conv2d`` (out elements x in_channels / groups x kh x kw), ``nn.Dense``
(out elements x in_features) and every cell that declares extra work through a method
``extra_macs(inputs, output) -> int`` — the way attention cells report their query-key and
attention-value matrix products, which are functional ops no hook sees — and ``conv_macs(inputs, output)``, the
convolution work of a fused cell that replaces convolution cells (counted as convolution). Element-wise work
(normalisation, activations, the LKA product, softmax) is not counted, as in the published tables
that count convolution and matrix-multiply work only.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

__all__ = ["count_params", "count_macs", "profile_model"]


def count_params(net, trainable_only: bool = True) -> int:
    """Parameter count; ``trainable_only`` matches PyTorch's usual count (BatchNorm statistics are buffers there)."""
    params = net.trainable_params() if trainable_only else net.get_parameters()
    return int(sum(int(np.prod(p.shape)) for p in params))


def _numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _conv_macs(cell: nn.Conv2d, output) -> int:
    kh, kw = cell.kernel_size if isinstance(cell.kernel_size, (tuple, list)) else (cell.kernel_size,) * 2
    return _numel(output.shape) * (cell.in_channels // cell.group) * kh * kw


def count_macs(net, input_shape: Tuple[int, ...]) -> Dict[str, int]:
    """MACs of one forward pass at ``input_shape`` (N, C, H, W), divided by N (per image).

    Returns ``{'total': ..., 'conv': ..., 'dense': ..., 'extra': ...}``. Runs in PyNative mode and
    restores the previous execution mode afterwards; the network is put in eval mode.
    """
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    counts = {"conv": 0, "dense": 0, "extra": 0}
    handles = []

    def hook(cell, inputs, output):
        if isinstance(cell, nn.Conv2d):
            counts["conv"] += _conv_macs(cell, output)
        elif isinstance(cell, nn.Dense):
            counts["dense"] += _numel(output.shape) * cell.in_channels
        extra = getattr(cell, "extra_macs", None)
        if callable(extra):
            counts["extra"] += int(extra(inputs, output))
        conv = getattr(cell, "conv_macs", None)
        if callable(conv):
            counts["conv"] += int(conv(inputs, output))

    try:
        for _, cell in net.cells_and_names():
            if isinstance(cell, (nn.Conv2d, nn.Dense)) or any(callable(getattr(cell, m, None))
                                                              for m in ("extra_macs", "conv_macs")):
                handles.append(cell.register_forward_hook(hook))
        net.set_train(False)
        net(ms.Tensor(np.zeros(input_shape, np.float32)))
    finally:
        for h in handles:
            h.remove()
        ms.set_context(mode=previous)
    batch = input_shape[0]
    out = {k: v // batch for k, v in counts.items()}
    out["total"] = sum(out.values())
    return out


def profile_model(name: str, input_size: Optional[Tuple[int, int, int]] = None, num_classes: int = 1000, **kwargs) -> dict:
    """Params (M: every weight, ``trainable_m`` the trainable ones) and GMACs of a registered model at its default
    input size (or ``input_size``)."""
    from ..models import create_model
    from ..utils.params import count_parameters

    net = create_model(name, num_classes=num_classes, **kwargs)
    size = tuple(input_size or net.default_cfg["input_size"])
    macs = count_macs(net, (1,) + size)
    total, trainable = count_parameters(net)
    return {"model": name, "params_m": total / 1e6, "trainable_m": trainable / 1e6, "gmacs": macs["total"] / 1e9,
            "input_size": size, "macs": macs}
