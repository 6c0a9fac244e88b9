"""The transformer MLP: ``fc1 -> GELU (exact) -> dropout -> fc2 -> dropout`` on tokens ``(B, N, C)``."""
from typing import Optional

from mindspore import nn

from .helpers import GELU
from .linear import dense

__all__ = ["Mlp"]


class Mlp(nn.Cell):
    """Two Dense layers with an exact GELU between them (Swin, PVT, DeiT; parameter names ``fc1``, ``fc2``).

    ``weight_init``: the Dense layers' initial weights (None: MindSpore's default); the networks that draw their
    own (trunc-normal) weights afterwards pass ``'zeros'`` so that no random numbers are drawn twice.
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, weight_init: Optional[str] = None) -> None:
        super().__init__()
        kw = {} if weight_init is None else {"weight_init": weight_init}
        self.fc1 = dense(dim, hidden, **kw)
        self.act = GELU()
        self.fc2 = dense(hidden, dim, **kw)
        self.drop = nn.Dropout(p=drop) if drop > 0 else nn.Identity()

    def construct(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
