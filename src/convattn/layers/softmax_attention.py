"""Multi-head softmax attention on the tokens as the projections write them, with a fused CPU form.

Swin's window attention, DeiT's attention and PVT's spatial-reduction attention all compute
``softmax(scale * q_h k_h^T + addend) v_h`` per head from a ``qkv`` projection ``(G, N, 3C)`` (q, k, v one after
the other, head h the column block ``[h*D, (h+1)*D)`` of each) or from ``q`` ``(G, N, C)`` and ``kv``
``(G, M, 2C)``, and hand ``(G, N, C)`` (heads side by side) to ``proj``. :class:`SoftmaxAttention` is that step,
written once. Its standard form is MindSpore's ops: the head transposes, two ``BatchMatMul`` and ``Softmax``
(export and GPU/Ascend use it). In a network built with the CPU backend it holds the fused kernel
(:class:`convattn.cpu.attention.FusedSoftmaxAttention`), which reads q, k and v in place with strided GEMMs.

``addend``: None, or ``(A, 1 or heads, N, M)`` added to the logits, group g taking ``addend[g mod A]`` (Swin's
relative position bias ``(1, heads, N, N)``, plus its shifted-window mask ``(nW, 1, N, N)`` summed in).
"""
from typing import Optional

from mindspore import nn, ops

from .helpers import unbind
from .targets import cpu_cell

__all__ = ["SoftmaxAttention"]


class SoftmaxAttention(nn.Cell):
    """``softmax(scale * q_h k_h^T + addend) v_h`` for every head, on projection-layout tokens.

    ``construct(q, kv=None, addend=None)``: ``q`` the packed ``qkv`` ``(G, N, 3C)`` when ``kv`` is None, else
    ``q`` ``(G, N, C)`` and ``kv`` ``(G, M, 2C)``; returns ``(G, N, C)``. ``attn_drop``: dropout on the attention
    map (the fused form has none, so a rate above 0 keeps the standard form). ``fused`` (read-only) says whether
    the CPU backend's kernel runs it, decided at construction.
    """

    def __init__(self, num_heads: int, head_dim: int, scale: Optional[float] = None, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = float(scale) if scale is not None else head_dim ** -0.5
        self.attn_drop = nn.Dropout(p=attn_drop) if attn_drop > 0 else nn.Identity()
        self.kernel = cpu_cell("softmax_attention", num_heads, self.scale, attn_drop)

    @property
    def fused(self) -> bool:
        return self.kernel is not None

    def extend_repr(self):
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, scale={self.scale:.4g}, fused={self.fused}"

    def extra_macs(self, inputs, output) -> int:
        """q k^T and attn v: 2 G N M C."""
        kv = inputs[1] if len(inputs) > 1 else None
        g, n, c = output.shape
        m = n if kv is None else kv.shape[1]
        return 2 * g * n * m * c

    def standard(self, q, kv, addend):
        nh, hd = self.num_heads, self.head_dim
        g, n = q.shape[0], q.shape[1]
        if kv is None:
            q, k, v = unbind(ops.transpose(q.reshape(g, n, 3, nh, hd), (2, 0, 3, 1, 4)))
        else:
            q = ops.transpose(q.reshape(g, n, nh, hd), (0, 2, 1, 3))
            k, v = unbind(ops.transpose(kv.reshape(g, -1, 2, nh, hd), (2, 0, 3, 1, 4)))
        attn = ops.matmul(q * self.scale, ops.transpose(k, (0, 1, 3, 2)))
        if addend is not None:
            m, a = attn.shape[-1], addend.shape[0]
            attn = (attn.reshape(-1, a, nh, n, m) + addend).reshape(-1, nh, n, m)
        attn = self.attn_drop(ops.softmax(attn, axis=-1))
        return ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)).reshape(g, n, nh * hd)

    def construct(self, q, kv=None, addend=None):
        if self.kernel is not None:
            return self.kernel(q, kv, addend)
        return self.standard(q, kv, addend)
