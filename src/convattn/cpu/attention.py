"""Multi-head softmax attention on projection-layout tokens as one fused CPU kernel (``attention_packed`` /
``attention_split`` with their gradients): q, k and v are read in place with strided GEMMs; in the
``convattn.bench`` op profile the head transposes, batched products and softmax were 20-30 % of a Swin, DeiT or
PVT training step. The contract is :class:`convattn.layers.SoftmaxAttention`'s."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedSoftmaxAttention"]


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
