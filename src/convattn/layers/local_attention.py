"""Sliding-window (k x k) softmax attention without the k*k-expanded tensors: blocked ("halo") dense matmuls.

The reference formulation (:class:`~convattn.layers.window_gather.LocalWindowGather` + broadcast multiply +
sum, as in the official ACmix code) materialises ``k*k`` copies of keys, values and position encodings:
for ACmix-ResNet's first stage at batch 8 that is 3 x 314 MB per layer, and the time goes into memory
traffic, not arithmetic. Here the output map is cut into ``bh x bw`` query blocks; every block reads one
``(s*(bh-1)+k) x (s*(bw-1)+k)`` halo of the (reflection-padded) keys and values (one ``ops.unfold`` with
stride ``s*b``: the halo overlap costs ``(halo/b)^2`` = 3-4x less memory than ``k*k`` copies), and

    logits = Q_block @ K_halo^T + mask,   out = softmax(logits) @ V_halo        (two BatchMatMuls)

where ``mask`` is 0 where the key lies in the query's own ``k x k`` window and -1e4 elsewhere, so
``exp`` gives exactly 0 outside the window and the softmax is *exactly* the sliding-window softmax (the
float32 result differs from the reference by summation order only). More multiply-adds
(``halo^2 / k^2`` ~ 3-4x), but dense GEMMs that run at matmul speed instead of elementwise speed.

Position encoding (ACmix): the official logit is ``q_i . (k_j + pe_i - pe_j)``. ``q_i . pe_i`` is constant
over j and cancels in the softmax over j, so the logit used here is ``q_i . (k_j - pe_j)``: ``k - pe`` is
formed once on the map (exact algebra; float32 rounding only).

Block size: per axis, ``n = ceil(Ho / target)`` blocks of ``ceil(Ho / n)`` queries (56 -> 7 x 8, 28 -> 4 x 7,
14 -> 2 x 7, 7 -> 1 x 7); a map that does not divide is extended by zero rows the mask never lets through,
and the extra outputs are cropped.
"""
import numpy as np
from mindspore import nn, ops

from .pad import reflection_pad2d

__all__ = ["BlockedWindowAttention", "block_split", "window_mask"]

# Finite in float16 (AMP O2 builds the mask in the logits' dtype; -1e9 would be -inf there, which Ascend's
# overflow check counts as an overflow), and exp(-1e4 + anything sensible) is exactly 0 in float16 and float32.
_NEG = -1e4


def block_split(size: int, target: int):
    """``(blocks, block)``: ``blocks = ceil(size / target)`` balanced blocks of ``ceil(size / blocks)``."""
    n = (size + target - 1) // target
    return n, (size + n - 1) // n


def window_mask(bh: int, bw: int, kernel: int, stride: int) -> np.ndarray:
    """``(bh*bw, hh*hw)`` additive mask: 0 where halo position (u, v) lies in query (r, c)'s window, else -1e4."""
    hh, hw = stride * (bh - 1) + kernel, stride * (bw - 1) + kernel
    u, r = np.arange(hh)[None, :], np.arange(bh)[:, None]
    rows = (u >= stride * r) & (u < stride * r + kernel)                      # (bh, hh)
    v, c = np.arange(hw)[None, :], np.arange(bw)[:, None]
    cols = (v >= stride * c) & (v < stride * c + kernel)                      # (bw, hw)
    inside = rows[:, None, :, None] & cols[None, :, None, :]                  # (bh, bw, hh, hw)
    return np.where(inside, 0.0, _NEG).astype(np.float32).reshape(bh * bw, hh * hw)


def _mask_tensor(bh, bw, kernel, stride, dtype):
    """The window mask built from ops (GRAPH mode folds it to a constant)."""
    hh, hw = stride * (bh - 1) + kernel, stride * (bw - 1) + kernel
    u = ops.arange(0, hh).reshape(1, hh)
    r = ops.arange(0, bh).reshape(bh, 1) * stride
    rows = ops.logical_and(u >= r, u < r + kernel)
    v = ops.arange(0, hw).reshape(1, hw)
    c = ops.arange(0, bw).reshape(bw, 1) * stride
    cols = ops.logical_and(v >= c, v < c + kernel)
    inside = ops.logical_and(rows.reshape(bh, 1, hh, 1), cols.reshape(1, bw, 1, hw))
    zero = ops.zeros((bh, bw, hh, hw), dtype)
    return ops.select(inside, zero, zero + _NEG).reshape(bh * bw, hh * hw)


class BlockedWindowAttention(nn.Cell):
    """``softmax_j(q_i . k_j) v_j`` over each query's ``k x k`` window of the reflection-padded key/value map.

    ``construct(q, k, v)``: q ``(N, d, Ho, Wo)`` (already on the stride grid and scaled), k and v
    ``(N, d, H, W)``; returns ``(N, d, Ho, Wo)`` with ``Ho = (H + 2p - k) // s + 1``. Equals
    ``LocalWindowGather(k, s, 1, p, 'reflect')`` + softmax over taps + weighted sum.

    Args:
        kernel_size: window side k; stride: s; padding: reflection border p.
        block: target query-block side (see the module docstring).
    """

    def __init__(self, kernel_size: int, stride: int = 1, padding: int = 0, block: int = 8) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1 or padding < 0 or block < 1:
            raise ValueError(f"kernel_size, stride, block must be >= 1 and padding >= 0, got kernel_size, stride, block, padding = "
                             f"{kernel_size}, {stride}, {block}, {padding}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.block = block
        p = padding
        self.reflect = reflection_pad2d(p)  # the CPU backend's row-copying kernel where the network uses it
        self.qk = ops.BatchMatMul(transpose_a=True)    # (d, b*b)^T @ (d, halo) -> (b*b, halo)
        self.av = ops.BatchMatMul(transpose_b=True)    # (d, halo) @ (b*b, halo)^T -> (d, b*b)

    def extend_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, block={self.block}"

    def _fit(self, x, need_h, need_w):
        """Crop or zero-extend the padded map (bottom/right) to exactly ``need_h x need_w``."""
        n, c, h, w = x.shape
        if h > need_h:
            x = x[:, :, :need_h]
        elif h < need_h:
            x = ops.concat((x, ops.zeros((n, c, need_h - h, w), x.dtype)), 2)
        h = x.shape[2]
        if w > need_w:
            x = x[:, :, :, :need_w]
        elif w < need_w:
            x = ops.concat((x, ops.zeros((n, c, h, need_w - w), x.dtype)), 3)
        return x

    @staticmethod
    def _halos(x, axis, blocks, step, halo):
        """Cut axis ``axis`` (2 or 3) of a map of exactly ``(blocks + 1) * step`` into ``blocks`` overlapping
        windows of ``halo`` (start ``i * step``): each window is its own block plus the head of the next one
        (reshapes and unit-step slices only; needs ``halo - step <= step``)."""
        extra = halo - step
        if axis == 2:
            n, c, _, w = x.shape
            own = x[:, :, :blocks * step].reshape(n, c, blocks, step, w)
            nxt = x[:, :, step:].reshape(n, c, blocks, step, w)[:, :, :, :extra]
            return ops.concat((own, nxt), 3)                              # (N, C, blocks, halo, W)
        n, c, nb, hh, _ = x.shape
        own = x[:, :, :, :, :blocks * step].reshape(n, c, nb, hh, blocks, step)
        nxt = x[:, :, :, :, step:].reshape(n, c, nb, hh, blocks, step)[:, :, :, :, :, :extra]
        return ops.concat((own, nxt), 5)                                  # (N, C, nbh, hh, blocks, halo)

    def construct(self, q, k, v):
        n, d, h, w = k.shape
        ks, s, p = self.kernel_size, self.stride, self.padding
        if p >= h or p >= w:
            raise ValueError(f"reflection padding {p} needs a feature map larger than {p} on each side, got {h}x{w}")
        ho = (h + 2 * p - ks) // s + 1
        wo = (w + 2 * p - ks) // s + 1
        nbh, bh = block_split(ho, self.block)
        nbw, bw = block_split(wo, self.block)
        hh, hw = s * (bh - 1) + ks, s * (bw - 1) + ks
        nl = nbh * nbw
        # keys and values: padded, fitted, cut into overlapping halos -> (N, L, 2d, hh*hw)
        kv = self.reflect(ops.concat((k, v), 1))
        if hh - s * bh <= s * bh and hw - s * bw <= s * bw:
            kv = self._fit(kv, (nbh + 1) * s * bh, (nbw + 1) * s * bw)
            kv = self._halos(self._halos(kv, 2, nbh, s * bh, hh), 3, nbw, s * bw, hw)  # (N, 2d, nbh, hh, nbw, hw)
            kv = ops.transpose(kv, (0, 2, 4, 1, 3, 5)).reshape(n, nl, 2 * d, hh * hw)
        else:  # blocks smaller than the window overhang: one unfold
            kv = self._fit(kv, s * (nbh * bh - 1) + ks, s * (nbw * bw - 1) + ks)
            kv = ops.unfold(kv, kernel_size=(hh, hw), dilation=1, padding=0, stride=(s * bh, s * bw))
            kv = ops.transpose(kv.reshape(n, 2 * d, hh * hw, nl), (0, 3, 1, 2))
        kh, vh = kv[:, :, :d], kv[:, :, d:]                               # (N, L, d, hh*hw) each
        # queries into blocks (zero queries fill a ragged edge; their outputs are cropped)
        qb = self._fit(q, nbh * bh, nbw * bw).reshape(n, d, nbh, bh, nbw, bw)
        qb = ops.transpose(qb, (0, 2, 4, 1, 3, 5)).reshape(n, nl, d, bh * bw)
        logits = self.qk(qb, kh) + _mask_tensor(bh, bw, ks, s, q.dtype)   # (N, L, bh*bw, hh*hw)
        attn = ops.softmax(logits, -1)
        out = self.av(vh, attn)                                            # (N, L, d, bh*bw)
        out = ops.transpose(out.reshape(n, nbh, nbw, d, bh, bw), (0, 3, 1, 4, 2, 5))
        out = out.reshape(n, d, nbh * bh, nbw * bw)
        if nbh * bh != ho or nbw * bw != wo:
            out = out[:, :, :ho, :wo]
        return out
