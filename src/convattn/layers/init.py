"""Weight initialisers shared by the networks (the conv fan-out normal is :func:`convattn.layers.helpers.conv_fan_out_normal`)."""
import numpy as np
from mindspore import Tensor, nn
from mindspore.common import initializer as init

__all__ = ["trunc_normal", "trunc_normal_dense"]


def trunc_normal(shape, std: float = 0.02, bound: float = 2.0) -> np.ndarray:
    """timm ``trunc_normal_(std=std)`` (cut at the absolute values +-bound) drawn with numpy: MindSpore's
    ``TruncatedNormal`` goes through scipy and takes seconds per million values."""
    rng = np.random.default_rng(np.random.randint(2 ** 31))  # follows np.random.seed
    x = rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std)
    out = np.abs(x) > bound
    while out.any():
        x[out] = rng.standard_normal(int(out.sum()), dtype=np.float32) * np.float32(std)
        out = np.abs(x) > bound
    return x


def trunc_normal_dense(cell: nn.Dense, std: float = 0.02) -> None:
    """The timm / Swin / PVT Linear init: weight ``trunc_normal(std)``, bias zero."""
    cell.weight.set_data(Tensor(trunc_normal(cell.weight.shape, std), cell.weight.dtype))
    if cell.bias is not None:
        cell.bias.set_data(init.initializer(init.Zero(), cell.bias.shape, cell.bias.dtype))
