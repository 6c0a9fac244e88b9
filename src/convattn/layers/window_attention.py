"""Swin window attention: window partition/reverse, cyclic shift, relative position bias, shifted-window mask.

Refer to "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (Liu et al., ICCV 2021;
microsoft/Swin-Transformer) and, for :class:`WindowAttentionACmix`, the ACmix Swin form (LeapLabTHU/ACmix @ 81dddb6,
``Swin-Transformer/models/swin_transformer_acmix.py``).

Everything here is written once for the zoo. The cyclic shift is a slice + concat (MindSpore 2.10 has no CPU
``Roll`` kernel and its ONNX exporter has no ``Roll``). ``relative_position_index`` and the shifted-window
``attn_mask`` are constants computed with numpy at construction (the official buffers are dropped on conversion;
``tests/test_swin.py`` checks they equal the official ones).

Both attention cells take the (already cyclically shifted) map ``(B, H, W, C)`` and return ``(B, H, W, C)``.
"""
from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from .acmix import ConvPathMixin
from .dynamic_attention import DepthwiseAttentionCore
from .helpers import unbind
from .linear import dense
from .softmax_attention import SoftmaxAttention

__all__ = ["cyclic_shift", "window_partition", "window_reverse", "relative_position_index", "shifted_window_mask",
           "window_token_order", "TokenPermutation", "WindowAttention", "WindowAttentionACmix"]


def cyclic_shift(x, shift_h: int, shift_w: int):
    """``torch.roll(x, (shift_h, shift_w), dims=(1, 2))`` on ``(B, H, W, C)`` built from slices + concat."""
    h, w = x.shape[1], x.shape[2]
    sh, sw = shift_h % h, shift_w % w
    if sh:
        x = ops.concat((x[:, h - sh:], x[:, :h - sh]), 1)
    if sw:
        x = ops.concat((x[:, :, w - sw:], x[:, :, :w - sw]), 2)
    return x


def window_partition(x, ws: int):
    """``(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c)
    return ops.transpose(x, (0, 1, 3, 2, 4, 5)).reshape(-1, ws, ws, c)


def window_reverse(windows, ws: int, h: int, w: int):
    """Inverse of :func:`window_partition`: ``(B * nW, ws, ws, C) -> (B, H, W, C)``."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // ws, w // ws, ws, ws, c)
    return ops.transpose(x, (0, 1, 3, 2, 4, 5)).reshape(-1, h, w, c)


def relative_position_index(wh: int, ww: int) -> np.ndarray:
    """``(wh*ww, wh*ww)`` index into the ``((2wh-1)(2ww-1), heads)`` bias table (the official buffer)."""
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """``(nW, ws*ws, ws*ws)`` additive mask (0 / -100) of the shifted-window attention (the official buffer)."""
    img = np.zeros((h, w), np.float32)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for hs in cuts:
        for wsl in cuts:
            img[hs, wsl] = cnt
            cnt += 1
    win = img.reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


def window_token_order(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """``(H*W,)`` token indices that put a row-major ``H x W`` map into window order after the cyclic shift
    ``roll(x, (-shift, -shift))``: ``x[:, order]`` equals ``window_partition(cyclic_shift(x, -s, -s), ws)``
    flattened (windows row-major, tokens row-major inside each window)."""
    idx = np.arange(h * w).reshape(h, w)
    if shift:
        idx = np.roll(idx, (-shift, -shift), axis=(0, 1))
    return idx.reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3).reshape(-1)


class TokenPermutation(nn.Cell):
    """``x[:, order]`` on ``(B, L, C)`` tokens: one Gather instead of the cyclic shift's two slice + concat pairs
    and the window partition's 6-D transpose (and, with the inverse order, the window reverse and the shift
    back). Its gradient is the gather by the inverse permutation (not the generic scatter-add)."""

    def __init__(self, order: np.ndarray) -> None:
        super().__init__()
        order = np.asarray(order, np.int64)
        if sorted(order.tolist()) != list(range(order.size)):
            raise ValueError("TokenPermutation needs a permutation of 0..L-1")
        self.order = Tensor(order.astype(np.int32))
        self.inverse = Tensor(np.argsort(order).astype(np.int32))

    def construct(self, x):
        return ops.gather(x, self.order, 1)

    def bprop(self, x, out, dout):
        return (ops.gather(dout, self.inverse, 1),)


class WindowAttention(nn.Cell):
    """Multi-head self-attention inside non-overlapping ``ws x ws`` windows with a relative position bias.

    Args:
        dim: channels; num_heads: heads (must divide dim); window_size: window side.
        qkv_bias: bias of the ``qkv`` Linear; qk_scale: overrides ``head_dim ** -0.5``.
        attn_drop, proj_drop: dropout rates.
        core: optional attention core from :func:`convattn.layers.dynamic_attention.build_attention_core`
            (ReLU / normalised attention, depth-wise self-attention); it receives the per-window q, k (, v), the
            relative position term (heads, N, N) and the shift mask. None: Swin's softmax attention below. A
            depth-wise core has no value bank: the projection is then ``qk`` (2C outputs) instead of ``qkv``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 core: Optional[nn.Cell] = None) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.n_tokens = window_size * window_size
        self.relative_position_bias_table = Parameter(  # trunc-normal(0.02) set by the network's init
            Tensor(np.random.normal(0.0, 0.02, ((2 * window_size - 1) ** 2, num_heads)).clip(-2, 2), ms.float32),
            name="relative_position_bias_table")
        self.relative_position_index = Tensor(relative_position_index(window_size, window_size).reshape(-1), ms.int32)
        self.core = core
        self.depthwise = isinstance(core, DepthwiseAttentionCore)
        if self.depthwise:
            self.qk = dense(dim, dim * 2, has_bias=qkv_bias)
        else:
            self.qkv = dense(dim, dim * 3, has_bias=qkv_bias)
        # Swin's softmax attention (None with a pluggable core)
        self.attention = SoftmaxAttention(num_heads, self.head_dim, self.scale, attn_drop) if core is None else None
        self.proj = dense(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop) if proj_drop > 0 else nn.Identity()

    def extend_repr(self):
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"

    def attend_windows(self, qkv, mask):
        """Window attention + ``proj`` on window-ordered qkv tokens ``(B*nW, N, 3C)``; returns ``(B*nW, N, C)``."""
        n, nh, c = self.n_tokens, self.num_heads, self.dim
        bias = ops.transpose(ops.gather(self.relative_position_bias_table, self.relative_position_index, 0)
                             .reshape(n, n, nh), (2, 0, 1))
        if self.core is None:
            addend = bias.reshape(1, nh, n, n)
            if mask is not None:  # bias and mask summed on the small (nW, heads, N, N) tensor
                addend = addend + mask.reshape(mask.shape[0], 1, n, n)
            return self.proj(self.attention(qkv.reshape(-1, n, qkv.shape[-1]), None, addend))
        parts = unbind(ops.transpose(qkv.reshape(-1, n, qkv.shape[-1] // c, nh, self.head_dim), (2, 0, 3, 1, 4)))
        if self.depthwise:
            out = self.core(parts[0], parts[1], bias, mask)
        else:
            out = self.core(parts[0], parts[1], parts[2], bias, mask)
        return self.proj(ops.transpose(out, (0, 2, 1, 3)).reshape(-1, n, c))

    def forward_windows(self, x, mask=None):
        """``(B*nW, N, C)`` window-ordered tokens -> ``(B*nW, N, C)`` (the block gathers the windows itself)."""
        return self.proj_drop(self.attend_windows(self.qk(x) if self.depthwise else self.qkv(x), mask))

    def attend(self, qkv, mask):
        """Window attention + ``proj`` on a ``(B, H, W, 3C)`` qkv map; returns ``(B, H, W, C)``."""
        h, w = qkv.shape[1], qkv.shape[2]
        ws, n = self.window_size, self.n_tokens
        x = self.attend_windows(window_partition(qkv, ws).reshape(-1, n, qkv.shape[-1]), mask)
        return window_reverse(x.reshape(-1, ws, ws, self.dim), ws, h, w)

    def construct(self, x, mask=None):
        """``x``: the (cyclically shifted) map ``(B, H, W, C)``, or its windows ``(B*nW, N, C)`` (token-gathered
        by the block); the output has the input's layout."""
        if x.ndim == 3:
            return self.forward_windows(x, mask)
        if self.depthwise:
            return self.proj_drop(self.attend(self.qk(x), mask))
        return self.proj_drop(self.attend(self.qkv(x), mask))


class WindowAttentionACmix(ConvPathMixin, WindowAttention):
    """ACmix's Swin form: ``rate1 * proj(window_attention) + rate2 * conv_path``, then ``proj_drop``.

    The conv path reads the same ``qkv`` projection on the whole (cyclically shifted) map: ``(B, H*W, 3*nH, hd)``
    -> ``fc`` (1x1 over the ``3*nH`` axis, **with bias**) -> ``(B, 9*hd, H, W)`` -> ``dep_conv`` (3x3,
    ``groups=hd``, no bias, shift-initialised); it does not pass through ``proj``. ``rate1 = rate2 = 0.5``.
    ``depthwise_conv`` selects the Ascend-legal depth-wise form (default: the build target's, depth-wise on Ascend).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 depthwise_conv: Optional[bool] = None) -> None:
        WindowAttention.__init__(self, dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop)
        self.init_conv_path(num_heads, dim // num_heads, dim, 3, 1, fc_bias=True, depthwise_conv=depthwise_conv)
        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")

    def extend_repr(self):
        return WindowAttention.extend_repr(self) + f", depthwise_conv={self.depthwise_conv}"

    def construct(self, x, mask=None):
        b, h, w, c = x.shape
        qkv = self.qkv(x)
        f_all = ops.transpose(qkv.reshape(b, h * w, 3 * self.num_heads, self.head_dim), (0, 2, 3, 1))
        out_conv = ops.transpose(self.conv_path(f_all, h, w), (0, 2, 3, 1))
        out = self.rate1 * self.attend(qkv, mask) + self.rate2 * out_conv
        return self.proj_drop(out)
