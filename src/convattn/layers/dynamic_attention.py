"""Self-attention read as two dynamic 1x1 convolutions, with pluggable activations and depth-wise attention.

Refer to "Interpret Vision Transformers as ConvNets with Dynamic Convolutions" (Zhou, Loy, Dai; arXiv 2309.10713).
No official code exists; every choice the paper leaves open is an argument with a stated default.

The paper's reading of one head of self-attention, for tokens x (N x C):

    static conv (q, k, v = W x + b)  ->  dynamic 1x1 conv with the key kernel bank k (C_h -> N per query)
    ->  activation (softmax, or a ConvNet activation + normalisation)  ->  dynamic 1x1 conv with the value
    kernel bank v (N -> C_h)  ->  static conv (the output projection).

:class:`AttentionActivation` is the pluggable activation, :class:`DynamicAttentionCore` the two dynamic
convolutions around it, :class:`DepthwiseAttentionCore` the depth-wise variant (paper §5.3): the value bank
is removed, the N selected key kernels are averaged into one kernel per position and applied to the query
by element-wise multiplication, so the channel count is unchanged:

    o_i = q_i * mean_{j in S(i)} k_j  (+ sum_j p_ij k_j with a relative position embedding p)

Both cores take per-head tensors (B', heads, N, C_h) so that one implementation serves the global attention
of ViT/DeiT (:class:`DynamicAttention`, all kernels selected) and Swin's window attention (the window's
kernels selected; an optional relative-position term and shifted-window mask).
"""
from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from .helpers import unbind
from .linear import dense
from .softmax_attention import SoftmaxAttention

__all__ = [
    "ATTN_ACTS", "ATTN_NORMS", "ATTN_KINDS", "REL_POS_MODES", "AttentionActivation", "DynamicAttentionCore",
    "DepthwiseAttentionCore", "DynamicAttention", "build_attention_core", "check_attention_args",
    "token_relative_position_index",
]

ATTN_ACTS = ("softmax", "relu", "identity")
ATTN_NORMS = ("none", "token", "layernorm", "batchnorm")
ATTN_KINDS = ("standard", "depthwise")
REL_POS_MODES = ("auto", "logits", "values")


def check_attention_args(dim: int, num_heads: int, attn: str = "standard", attn_act: Optional[str] = None,
                         attn_norm: Optional[str] = None, tau: float = 1.0, rel_pos: str = "auto") -> tuple:
    """Validate the attention options and fill in the defaults; returns ``(attn_act, attn_norm, rel_pos)``.

    Defaults: standard attention -> ``softmax`` (no extra normalisation); ``relu`` -> ``attn_norm='token'``
    (divide by the number of keys); depth-wise attention -> ``identity`` (the paper's formula has no activation).
    ``rel_pos='auto'`` adds a relative-position term to the logits under softmax (Swin) and to the values
    otherwise (the paper: o_i = (q_i k^T / sqrt(C_h) + p_i) v).
    """
    if attn not in ATTN_KINDS:
        raise ValueError(f"unknown attention '{attn}'; choose one of {ATTN_KINDS}")
    if attn_act is None:
        attn_act = "softmax" if attn == "standard" else "identity"
    if attn_act not in ATTN_ACTS:
        raise ValueError(f"unknown attention activation attn_act='{attn_act}'; choose one of {ATTN_ACTS}")
    if attn_norm is None:
        attn_norm = "token" if (attn == "standard" and attn_act == "relu") else "none"
    if attn_norm not in ATTN_NORMS:
        raise ValueError(f"unknown attention normalisation attn_norm='{attn_norm}'; choose one of {ATTN_NORMS}")
    if attn == "standard" and attn_act == "softmax" and attn_norm != "none":
        raise ValueError(f"attn_norm='{attn_norm}' with softmax: softmax already normalises each row; "
                         "use attn_act='relu' (or 'identity') to study another normalisation")
    if attn == "depthwise":
        if attn_act == "softmax":
            raise ValueError("depth-wise attention has no attention map to apply softmax to; "
                             "use attn_act='identity' (default) or 'relu'")
        if attn_norm != "none":
            raise ValueError(f"attn_norm='{attn_norm}' needs an attention map; depth-wise attention has none, "
                             "use attn_norm=None")
    if rel_pos not in REL_POS_MODES:
        raise ValueError(f"unknown rel_pos='{rel_pos}'; choose one of {REL_POS_MODES}")
    if rel_pos == "auto":
        rel_pos = "logits" if attn_act == "softmax" else "values"
    if not tau > 0:
        raise ValueError(f"the temperature tau must be > 0, got {tau}")
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the width dim={dim}; "
                         f"choose a head count that divides {dim}")
    return attn_act, attn_norm, rel_pos


def token_relative_position_index(grid_h: int, grid_w: int, num_prefix: int = 1) -> np.ndarray:
    """(N, N) indices into a relative-position table for ``num_prefix`` (0 or 1) class token + a grid of patches.

    Patch pairs index the (2*gh - 1) * (2*gw - 1) 2-D offsets (Swin's layout); with a class token three more
    entries follow: class -> patch, patch -> class, class -> class (the layout BEiT uses for the same problem).
    """
    if num_prefix not in (0, 1):
        raise ValueError(f"num_prefix must be 0 or 1 (one class token), got {num_prefix}")
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    idx = (ys[:, None] - ys[None, :] + grid_h - 1) * (2 * grid_w - 1) + (xs[:, None] - xs[None, :] + grid_w - 1)
    if num_prefix:
        t = (2 * grid_h - 1) * (2 * grid_w - 1)
        n = idx.shape[0] + 1
        full = np.empty((n, n), np.int64)
        full[1:, 1:] = idx
        full[0, 1:], full[1:, 0], full[0, 0] = t, t + 1, t + 2
        idx = full
    return idx.astype(np.int32)


def _window_keep(mask, batch_windows: int):
    """Additive Swin mask (nW, N, M) of 0 / -100 -> multiplicative keep map (B', 1, N, M) of 1 / 0."""
    n_w = mask.shape[0]
    keep = ops.cast(mask > -0.5, ms.float32)
    keep = ops.tile(keep.reshape(1, n_w, 1, mask.shape[1], mask.shape[2]), (batch_windows // n_w, 1, 1, 1, 1))
    return keep.reshape(batch_windows, 1, mask.shape[1], mask.shape[2])


class AttentionActivation(nn.Cell):
    """The activation of the query-key dynamic convolution: maps logits (B', h, N, M) to attention weights.

    Args:
        act: ``'softmax'`` (the Transformer), ``'relu'`` or ``'identity'``.
        norm: normalisation of the map after (or, with ``norm_first``, before) the activation:
            ``'none'``; ``'token'``: divide by the number of keys M (of unmasked keys under a window mask);
            ``'layernorm'``: LayerNorm over the key axis of each row, with a per-head affine (gamma 1, beta 0),
            so it does not tie the network to one token count; ``'batchnorm'``: ``BatchNorm2d`` over the map
            with the heads as channels (statistics over batch, queries and keys).
        num_heads: heads (the affine size of the layer/batch norm).
        tau: temperature; the logits are divided by tau before the activation (softmax(x / tau) as in the paper).
        norm_first: normalise the logits before the activation (ConvNet order conv -> norm -> ReLU) instead of
            after it (default: after, the order of softmax = exp then row normalisation).
        rel_pos: where a relative-position term p (h, N, M) enters: ``'logits'`` (added before the activation,
            Swin) or ``'values'`` (added to the weights after activation/normalisation, i.e. o = (a + p) v).
        eps: epsilon of the layer/batch norm.

    Under a shifted-window mask, softmax adds the mask to the logits (as Swin); the other activations multiply
    the final weights by the 0/1 keep map, so masked keys get exactly zero weight.
    """

    def __init__(self, act: str = "softmax", norm: str = "none", num_heads: int = 1, tau: float = 1.0,
                 norm_first: bool = False, rel_pos: str = "logits", eps: float = 1e-5) -> None:
        super().__init__()
        self.act_name, self.norm_name, self.rel_pos = act, norm, rel_pos
        self.tau = float(tau)
        self.norm_first = bool(norm_first)
        self.eps = float(eps)
        self.num_heads = num_heads
        if norm == "layernorm":
            self.gamma = Parameter(Tensor(np.ones((1, num_heads, 1, 1), np.float32)), name="gamma")
            self.beta = Parameter(Tensor(np.zeros((1, num_heads, 1, 1), np.float32)), name="beta")
        if norm == "batchnorm":
            self.bn = nn.BatchNorm2d(num_heads, eps=eps)
        self.softmax = nn.Softmax(axis=-1)
        self.relu = nn.ReLU()

    def _activate(self, x):
        if self.act_name == "softmax":
            return self.softmax(x)
        if self.act_name == "relu":
            return self.relu(x)
        return x

    def _normalise(self, x, keep):
        if self.norm_name == "token":
            if keep is None:
                return x / x.shape[-1]
            return x / ops.maximum(keep.sum(-1, keepdims=True), 1.0)
        if self.norm_name == "layernorm":
            mean = x.mean(-1, keep_dims=True)
            xc = x - mean
            var = (xc * xc).mean(-1, keep_dims=True)
            return xc / ops.sqrt(var + self.eps) * self.gamma + self.beta
        if self.norm_name == "batchnorm":
            return self.bn(x)
        return x

    def construct(self, logits, bias=None, mask=None):
        x = logits
        if self.tau != 1.0:
            x = x / self.tau
        if bias is not None and self.rel_pos == "logits":
            x = x + ops.expand_dims(bias, 0)
        keep = None
        if mask is not None:
            if self.act_name == "softmax":
                b_, h, n, m = x.shape
                n_w = mask.shape[0]
                x = x.reshape(b_ // n_w, n_w, h, n, m) + mask.reshape(1, n_w, 1, n, m)
                x = x.reshape(b_, h, n, m)
            else:
                keep = _window_keep(mask, x.shape[0])
        if self.norm_first:
            x = self._activate(self._normalise(x, keep))
        else:
            x = self._normalise(self._activate(x), keep)
        if bias is not None and self.rel_pos == "values":
            x = x + ops.expand_dims(bias, 0)
        if keep is not None:
            x = x * keep
        return x

    def extend_repr(self):
        return (f"act={self.act_name}, norm={self.norm_name}, tau={self.tau}, norm_first={self.norm_first}, "
                f"rel_pos={self.rel_pos}")


class DynamicAttentionCore(nn.Cell):
    """Multi-head attention on per-head tensors: ``act(q k^T * scale) v`` (the two dynamic 1x1 convolutions).

    ``construct(q, k, v, bias=None, mask=None)`` with q (B', h, N, C_h), k and v (B', h, M, C_h), an optional
    relative-position term ``bias`` (h, N, M) and an optional additive Swin window mask (nW, N, M);
    returns (B', h, N, C_h).
    """

    def __init__(self, num_heads: int, head_dim: int, attn_act: str = "softmax", attn_norm: str = "none",
                 tau: float = 1.0, norm_first: bool = False, rel_pos: str = "logits",
                 scale: Optional[float] = None, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = float(scale) if scale is not None else head_dim ** -0.5
        self.act = AttentionActivation(attn_act, attn_norm, num_heads, tau, norm_first, rel_pos)
        self.attn_drop = nn.Dropout(p=attn_drop) if attn_drop > 0 else nn.Identity()
        self.qk_matmul = ops.BatchMatMul(transpose_b=True)
        self.av_matmul = ops.BatchMatMul()

    def construct(self, q, k, v, bias=None, mask=None):
        logits = self.qk_matmul(q * self.scale, k)   # query-key dynamic 1x1 conv: kernels = the keys
        attn = self.act(logits, bias, mask)
        attn = self.attn_drop(attn)
        return self.av_matmul(attn, v)                # attention-value dynamic 1x1 conv: kernels = the values

    def extra_macs(self, inputs, output) -> int:
        q, k = inputs[0], inputs[1]
        b_, h, n, c = q.shape
        return 2 * b_ * h * n * k.shape[2] * c

    def extend_repr(self):
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, scale={self.scale:.4g}"


class DepthwiseAttentionCore(nn.Cell):
    """Depth-wise self-attention (paper §5.3) on per-head tensors.

    Only the key kernel bank is kept. For each query the selected key kernels (all tokens for ViT; the
    window's tokens, restricted by the shifted-window mask, for Swin) are averaged into one kernel k_bar,
    which is applied to the query by element-wise multiplication: ``o_i = act(scale * q_i * k_bar_i)``.
    With a relative-position term p (h, N, M) the paper moves it from the removed values onto the keys:
    ``o_i += sum_j p_ij k_j``.

    Args:
        attn_act: ``'identity'`` (the paper's formula, default) or ``'relu'`` on the product.
        scale: multiplier of the product (default 1.0: the paper states none).
    """

    def __init__(self, num_heads: int, head_dim: int, attn_act: str = "identity", scale: Optional[float] = None) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.act_name = attn_act
        self.scale = 1.0 if scale is None else float(scale)
        self.relu = nn.ReLU()
        self.matmul = ops.BatchMatMul()

    def construct(self, q, k, bias=None, mask=None):
        if mask is None:
            k_bar = k.mean(2, keep_dims=True)                         # (B', h, 1, C_h): one kernel per window
        else:
            keep = ops.tile(_window_keep(mask, q.shape[0]), (1, self.num_heads, 1, 1))   # (B', h, N, M)
            keep = (keep / keep.sum(-1, keepdims=True)).astype(k.dtype)  # float32 map; k is float16 under O2
            k_bar = self.matmul(keep, k)                                                # per-query kernel
        out = q * k_bar
        if self.scale != 1.0:
            out = out * self.scale
        if self.act_name == "relu":
            out = self.relu(out)
        if bias is not None:
            p = ops.tile(ops.expand_dims(bias, 0), (q.shape[0], 1, 1, 1))
            if mask is not None:
                p = p * _window_keep(mask, q.shape[0])
            out = out + self.matmul(p.astype(k.dtype), k)
        return out

    def extra_macs(self, inputs, output) -> int:
        q, k = inputs[0], inputs[1]
        b_, h, n, c = q.shape
        m = k.shape[2]
        has_bias = len(inputs) > 2 and inputs[2] is not None
        has_mask = len(inputs) > 3 and inputs[3] is not None
        macs = b_ * h * n * c                                  # q * k_bar
        macs += b_ * h * (n if has_mask else 1) * m * c        # averaging the selected kernels
        if has_bias:
            macs += b_ * h * n * m * c                         # p k
        return macs

    def extend_repr(self):
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, act={self.act_name}, scale={self.scale}"


def build_attention_core(dim: int, num_heads: int, attn: str = "standard", attn_act: Optional[str] = None,
                         attn_norm: Optional[str] = None, tau: float = 1.0, norm_first: bool = False,
                         rel_pos: str = "auto", scale: Optional[float] = None, attn_drop: float = 0.0) -> nn.Cell:
    """The attention core for the options (validated): a :class:`DynamicAttentionCore` or :class:`DepthwiseAttentionCore`."""
    attn_act, attn_norm, rel_pos = check_attention_args(dim, num_heads, attn, attn_act, attn_norm, tau, rel_pos)
    head_dim = dim // num_heads
    if attn == "depthwise":
        return DepthwiseAttentionCore(num_heads, head_dim, attn_act, scale)
    return DynamicAttentionCore(num_heads, head_dim, attn_act, attn_norm, tau, norm_first, rel_pos, scale, attn_drop)


class DynamicAttention(nn.Cell):
    """Global multi-head self-attention on tokens (B, N, C), timm ``Attention`` layout (``qkv``, ``proj``).

    Args:
        dim: width C. num_heads: heads (must divide C). qkv_bias: bias of the static q/k/v projection.
        attn: ``'standard'`` or ``'depthwise'`` (then the static projection is ``qk`` with 2C outputs: no values).
        attn_act, attn_norm, tau, norm_first, rel_pos: see :class:`AttentionActivation` and
            :func:`check_attention_args` for the defaults.
        qk_scale: logit scale (default C_h ** -0.5; depth-wise: 1.0).
        attn_drop, proj_drop: dropout on the attention map / after the output projection.

        rel_pos_grid: ``(gh, gw)`` patch grid to learn a relative position embedding for (a per-head table of the
            2-D offsets, Swin's layout, plus three class-token entries when ``num_prefix`` = 1; trunc-normal 0.02);
            where it enters is ``rel_pos`` (softmax: the logits; ReLU / identity: o = (a + p) v). None: no term.

    ``construct(x, bias=None)``: ``bias`` is an optional relative-position term (heads, N, N) given by the caller
    (used when the cell has no table of its own).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn: str = "standard",
                 attn_act: Optional[str] = None, attn_norm: Optional[str] = None, tau: float = 1.0,
                 norm_first: bool = False, rel_pos: str = "auto", qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, rel_pos_grid: Optional[tuple] = None,
                 num_prefix: int = 1) -> None:
        super().__init__()
        self.core = build_attention_core(dim, num_heads, attn, attn_act, attn_norm, tau, norm_first, rel_pos,
                                         qk_scale, attn_drop)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        # plain softmax attention (the Transformer's: no temperature or normalisation, a relative-position term
        # on the logits) runs as a SoftmaxAttention on the qkv tokens, with its fused CPU form
        act = getattr(self.core, "act", None)
        plain = act is not None and (act.act_name, act.norm_name, act.tau, act.rel_pos) == ("softmax", "none", 1.0,
                                                                                             "logits")
        self.attention = SoftmaxAttention(num_heads, self.head_dim, self.core.scale, attn_drop) if plain else None
        self.depthwise = attn == "depthwise"
        if self.depthwise:
            self.qk = dense(dim, 2 * dim, has_bias=qkv_bias)
        else:
            self.qkv = dense(dim, 3 * dim, has_bias=qkv_bias)
        self.proj = dense(dim, dim)
        self.proj_drop = nn.Dropout(p=proj_drop) if proj_drop > 0 else nn.Identity()
        self.rel_pos_grid = None if rel_pos_grid is None else (int(rel_pos_grid[0]), int(rel_pos_grid[1]))
        if self.rel_pos_grid is not None:
            gh, gw = self.rel_pos_grid
            index = token_relative_position_index(gh, gw, num_prefix)
            self.n_rel_tokens = index.shape[0]
            size = (2 * gh - 1) * (2 * gw - 1) + (3 if num_prefix else 0)
            self.relative_position_bias_table = Parameter(
                Tensor(np.random.normal(0.0, 0.02, (size, num_heads)).clip(-2, 2), ms.float32),
                name="relative_position_bias_table")
            self.relative_position_index = Tensor(index.reshape(-1), ms.int32)

    def relative_position_bias(self):
        """The learned relative-position term (heads, N, N)."""
        n = self.n_rel_tokens
        bias = ops.gather(self.relative_position_bias_table, self.relative_position_index, 0)
        return ops.transpose(bias.reshape(n, n, self.num_heads), (2, 0, 1))

    def construct(self, x, bias=None):
        b, n, c = x.shape
        if self.rel_pos_grid is not None:
            bias = self.relative_position_bias()
        if self.depthwise:
            qk = self.qk(x).reshape(b, n, 2, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
            q, k = unbind(qk)  # one Split (a StridedSlice copy is ~100x slower on CPU)
            out = self.core(q, k, bias)
        elif self.attention is not None:
            addend = None if bias is None else bias.reshape(1, self.num_heads, n, n)
            return self.proj_drop(self.proj(self.attention(self.qkv(x), None, addend)))
        else:
            qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = unbind(qkv)
            out = self.core(q, k, v, bias)
        out = out.transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj_drop(self.proj(out))
