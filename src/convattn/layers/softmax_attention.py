"""Multi-head softmax attention on the tokens as the projections write them, with a fused CPU form.

Swin's window attention, DeiT's attention and PVT's spatial-reduction attention all compute
``softmax(scale * q_h k_h^T + addend) v_h`` per head from a ``qkv`` projection ``(G, N, 3C)`` (q, k, v one after
the other, head h the column block ``[h*D, (h+1)*D)`` of each) or from ``q`` ``(G, N, C)`` and ``kv``
``(G, M, 2C)``, and hand ``(G, N, C)`` (heads side by side) to ``proj``. :class:`SoftmaxAttention` is that step,
written once. Its standard form is MindSpore's ops: the head transposes, two ``BatchMatMul`` and ``Softmax``
(what the models ran before; export and GPU/Ascend use it). Its ``fused`` form (CPU, where the kernels and the
private AVX-512 GEMM library of :mod:`convattn.layers.gemm` are available) is one kernel, ``attention_packed`` /
``attention_split`` with its gradient (``kernels/local_window.cc``), that reads q, k and v in place with strided
GEMMs: in the ``convattn.bench`` op profile the transposes, batched products and softmax (with its
``Mul``/``ReduceSum``/``Sub`` gradient) were 20-30 % of a Swin, DeiT or PVT training step.

``addend``: None, or ``(A, 1 or heads, N, M)`` added to the logits, group g taking ``addend[g mod A]`` (Swin's
relative position bias ``(1, heads, N, N)``, plus its shifted-window mask ``(nW, 1, N, N)`` summed in).
"""
from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .fused_window import Float32Cell, custom_primitive, fused_kernels_available, require_library
from ..cpu.gemm import gemm_library
from .helpers import unbind

__all__ = ["SoftmaxAttention", "FusedSoftmaxAttention"]


def _attention_op(num_heads: int, packed: bool):
    """The forward Custom primitive (outputs: the attention output and the softmax map it keeps for the
    gradient) with its bprop, packed ``(qkv, addend, scale)`` or split ``(q, kv, addend, scale)``."""
    require_library()
    tag = f"heads{num_heads}"
    if packed:
        grad = custom_primitive("attention_packed_grad", "", lambda x, a, s, p, d: (x, a), tag=tag,
                                out_dtype=lambda x, a, s, p, d: (x, a))

        def bprop(qkv, addend, scale, out, dout):
            dqkv, daddend = grad(qkv, addend, scale, out[1], dout[0])
            return dqkv, daddend, ops.zeros_like(scale)

        return custom_primitive(
            "attention_packed", "", lambda x, a, s: ((x[0], x[1], x[2] // 3), (x[0], num_heads, x[1], x[1])),
            bprop, tag=tag, out_dtype=lambda x, a, s: (x, x))

    grad = custom_primitive("attention_split_grad", "", lambda q, kv, a, s, p, d: (q, kv, a), tag=tag,
                            out_dtype=lambda q, kv, a, s, p, d: (q, kv, a))

    def bprop_split(q, kv, addend, scale, out, dout):
        dq, dkv, daddend = grad(q, kv, addend, scale, out[1], dout[0])
        return dq, dkv, daddend, ops.zeros_like(scale)

    return custom_primitive(
        "attention_split", "", lambda q, kv, a, s: (q, (q[0], num_heads, q[1], kv[1])), bprop_split, tag=tag,
        out_dtype=lambda q, kv, a, s: (q, q))


class FusedSoftmaxAttention(Float32Cell):
    """The fused kernel of :class:`SoftmaxAttention`: ``construct(q, kv, addend)`` (``kv`` None: ``q`` is the
    packed ``qkv``; ``addend`` None: no addend), float32 inside, the caller's dtype on the output."""

    def __init__(self, num_heads: int, scale: float) -> None:
        super().__init__()
        self.packed_op = _attention_op(num_heads, True)
        self.split_op = _attention_op(num_heads, False)
        self.scale = Tensor(np.array([scale], np.float32))
        self.no_addend = Tensor(np.zeros((1, 1, 1, 1), np.float32))  # one element: a shift the softmax ignores

    def construct(self, q, kv=None, addend=None):
        f32 = ms.float32
        add = self.no_addend if addend is None else addend.astype(f32)
        if kv is None:
            out = self.packed_op(q.astype(f32), add, self.scale)
        else:
            out = self.split_op(q.astype(f32), kv.astype(f32), add, self.scale)
        return out[0].astype(q.dtype)


class SoftmaxAttention(nn.Cell):
    """``softmax(scale * q_h k_h^T + addend) v_h`` for every head, on projection-layout tokens.

    ``construct(q, kv=None, addend=None)``: ``q`` the packed ``qkv`` ``(G, N, 3C)`` when ``kv`` is None, else
    ``q`` ``(G, N, C)`` and ``kv`` ``(G, M, 2C)``; returns ``(G, N, C)``. ``attn_drop``: dropout on the attention
    map (the fused form has none, so a rate above 0 keeps the standard form). ``fused`` (default: the build
    target's ``cell_kernels`` form) selects the fused CPU kernel; :func:`convattn.layers.set_fused_kernels`
    switches it.
    """

    def __init__(self, num_heads: int, head_dim: int, scale: Optional[float] = None, attn_drop: float = 0.0,
                 fused: Optional[bool] = None) -> None:
        super().__init__()
        from .targets import cell_kernels_allowed  # here: targets imports this module's neighbours

        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = float(scale) if scale is not None else head_dim ** -0.5
        self.attn_drop = nn.Dropout(p=attn_drop) if attn_drop > 0 else nn.Identity()
        allowed = cell_kernels_allowed()
        self.fused_capable = (allowed and attn_drop == 0 and fused_kernels_available()
                              and gemm_library() is not None)
        self.fused = self.fused_capable and (fused is None or bool(fused))
        self.kernel = FusedSoftmaxAttention(num_heads, self.scale) if self.fused_capable else None

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
        if self.fused:
            return self.kernel(q, kv, addend)
        return self.standard(q, kv, addend)
