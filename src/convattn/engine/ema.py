"""Exponential moving average of the trainable weights (and a copy of BatchNorm statistics)."""
import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple

__all__ = ["EMA"]


class EMA(nn.Cell):
    """``ema = decay * ema + (1 - decay) * w`` after every optimizer step, with timm's warm-up
    ``decay_t = min(decay, (1 + t) / (10 + t))`` so early averages are not dominated by the random init.
    Non-trainable parameters (BatchNorm moving statistics) are copied. Parameters are named ``ema.<name>``."""

    def __init__(self, network: nn.Cell, decay: float = 0.9999) -> None:
        super().__init__()
        self.decay = decay
        self.src = ParameterTuple(network.get_parameters())
        self.trainable = tuple(p.requires_grad for p in self.src)
        self.shadow = ParameterTuple([Parameter(p.data.copy(), name="ema." + p.name, requires_grad=False)
                                      for p in self.src])
        self.updates = Parameter(ms.Tensor(0.0, ms.float32), name="ema.updates", requires_grad=False)

    def construct(self):
        ops.assign_add(self.updates, ms.Tensor(1.0, ms.float32))
        d = ops.minimum(ms.Tensor(self.decay, ms.float32), (1.0 + self.updates) / (10.0 + self.updates))
        for i in range(len(self.shadow)):
            if self.trainable[i]:
                ops.assign(self.shadow[i], self.shadow[i] * d + self.src[i] * (1.0 - d))
            else:
                ops.assign(self.shadow[i], self.src[i])
        return d

    def swap(self) -> None:
        """Exchange the live weights and the averages (call twice to restore)."""
        for p, s in zip(self.src, self.shadow):
            tmp = p.data.copy()
            p.set_data(s.data.copy())
            s.set_data(tmp)
