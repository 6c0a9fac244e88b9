"""Fused local-window operators on CPU: ``ops.Custom`` kernels with their gradients (the CPU backend's ACmix and
SAN forms).

SAN's aggregation and ACmix's sliding-window attention both reduce to two operators over a k x k window of
a padded map (stride 1 with dilation d, or stride 2; taps in ``F.unfold`` order ``o_t``), here computed without the
``k*k``-expanded tensor that a gather (unfold) builds:

* :class:`LocalAggregate` ``(w, xp) -> y``: ``y[c, p] = sum_t w[g(c), t, p] * xp[c, p + o_t]``
  (SAN: ``w`` = attention weights, ``xp`` = padded beta(x); ACmix: ``w`` = softmax, ``xp`` = padded values);
* :class:`LocalCorrelate` ``(a, xp) -> w``: ``w[g, t, p] = sum_{c in g} a[c, p] * xp[c, p + o_t]``
  (ACmix's logits q . k_j; also the weight gradient of the aggregation);
* :class:`TapSoftmax`: the softmax over the tap axis of ``(N, G, k*k, H, W)``;
* :class:`LocalDiff` ``(a, xp) -> r``: ``r[c, t, p] = a[c, p] - xp[c, p + o_t]`` (SAN's subtraction relation);
* :class:`PairwiseMlp`: SAN's pairwise weights at inference (relation, ReLU, 1x1, ReLU, 1x1 per tap and pixel in
  one pass), so the relation tensor never exists;
* :class:`FusedWindowAttention`: ACmix's whole sliding-window attention from the three above.

``g(c)`` is ``c mod G`` (``'interleaved'``, SAN's weight sharing) or ``c // (C/G)`` (``'contiguous'``,
attention heads). The kernels are float32; other dtypes are cast around them.
"""
from mindspore import nn, ops
import mindspore as ms

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["LocalAggregate", "LocalCorrelate", "LocalDiff", "PairwiseMlp", "TapSoftmax", "FusedWindowAttention"]

_MODES = ("interleaved", "contiguous")


def _make_ops(mode: str, kernel_size: int, dilation: int, groups: int, stride: int = 1):
    """``(agg, corr)`` Custom primitives with their bprops for one window geometry and weight-group count."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if stride not in (1, 2) or (stride == 2 and dilation != 1):
        raise ValueError(f"the fused kernels support stride 1 (any dilation) and stride 2 (dilation 1), got "
                         f"stride={stride}, dilation={dilation}")
    require_library()
    suffix = "" if stride == 1 else "_s2"
    taps = kernel_size * kernel_size

    def agg_shape(w, xp):
        return (xp[0], xp[1], w[3], w[4])

    def corr_shape(a, xp):
        return (a[0], groups, taps, a[2], a[3])

    tag = f"{mode}-k{kernel_size}-d{dilation}-g{groups}-s{stride}"

    def custom(func, out_shape, bprop=None, inputs=2):
        return custom_primitive(func, mode + suffix, out_shape, bprop, inputs, tag)

    agg_t = custom("agg_t", lambda w, gy, xp: xp, inputs=3)  # xp: the padded shape only
    corr_plain = custom("corr", corr_shape)
    agg_plain = custom("agg", agg_shape)

    def agg_bprop(w, xp, out, dout):
        return corr_plain(dout, xp), agg_t(w, dout, xp)

    def corr_bprop(a, xp, out, dout):
        return agg_plain(dout, xp), agg_t(dout, a, xp)

    return custom("agg", agg_shape, agg_bprop), custom("corr", corr_shape, corr_bprop)


class LocalAggregate(Float32Cell):
    """``construct(w, xp)``: weights ``(N, G, k*k, Ho, Wo)`` and the padded map ``(N, C, Hp, Wp)`` ->
    ``(N, C, Ho, Wo)`` (stride 1: ``Hp = Ho + d(k-1)``; stride 2: ``Hp >= 2(Ho-1) + k``); ``C`` divisible by ``G``,
    weight group of channel c by ``mode``. float32 inside."""

    def __init__(self, mode: str, kernel_size: int, dilation: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.op, _ = _make_ops(mode, kernel_size, dilation, groups, stride)

    def construct(self, w, xp):
        dtype = xp.dtype
        return self.op(w.astype(ms.float32), xp.astype(ms.float32)).astype(dtype)


class LocalCorrelate(Float32Cell):
    """``construct(a, xp)``: ``a`` ``(N, C, Ho, Wo)`` and the padded map -> ``(N, groups, k*k, Ho, Wo)``,
    ``w[g, t, p] = sum_{c in g} a[c, p] * xp[c, s*p + o_t]``. float32 inside."""

    def __init__(self, mode: str, kernel_size: int, dilation: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        _, self.op = _make_ops(mode, kernel_size, dilation, groups, stride)

    def construct(self, a, xp):
        dtype = a.dtype
        return self.op(a.astype(ms.float32), xp.astype(ms.float32)).astype(dtype)


class TapSoftmax(Float32Cell):
    """Softmax over axis 2 of ``(N, G, T, H, W)``; float32 inside."""

    def __init__(self) -> None:
        super().__init__()
        require_library()
        grad = custom_primitive("tap_softmax_grad", "", lambda y, dy: y)

        def bprop(x, out, dout):
            return (grad(out, dout),)

        self.op = custom_primitive("tap_softmax", "", lambda x: x, bprop, inputs=1)

    def construct(self, x):
        return self.op(x.astype(ms.float32)).astype(x.dtype)


def _diff_ops(kernel_size: int, dilation: int):
    """``(diff, scatter)`` for one footprint: ``diff(a, xp)`` -> ``(N, C, k*k, H, W)`` with its bprop, and its
    transpose ``scatter(g, xp)`` (``xp`` gives the padded shape only)."""
    require_library()
    taps, tag = kernel_size * kernel_size, f"k{kernel_size}-d{dilation}"
    scatter = custom_primitive("scatter", "", lambda g, xp: xp, tag=tag)

    def bprop(a, xp, out, dout):
        return ops.sum(dout, 2), -scatter(dout, xp)

    return custom_primitive("diff", "", lambda a, xp: (a[0], a[1], taps, a[2], a[3]), bprop, tag=tag), scatter


class LocalDiff(Float32Cell):
    """``construct(a, xp)``: ``a`` ``(N, C, H, W)``, the padded map ``(N, C, H + d(k-1), W + d(k-1))`` ->
    ``(N, C, k*k, H, W)`` with ``r[c, t, p] = a[c, p] - xp[c, p + o_t]``; float32 inside."""

    def __init__(self, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        self.op, _ = _diff_ops(kernel_size, dilation)

    def construct(self, a, xp):
        dtype = a.dtype
        return self.op(a.astype(ms.float32), xp.astype(ms.float32)).astype(dtype)


class PairwiseMlp(Float32Cell):
    """``construct(a, bp, w1, b1, w2, b2)`` -> ``(N, O, k*k, H, W)``:
    ``w2 @ relu(w1 @ relu(a_i - bp_{i+o_t}) + b1) + b2`` per tap t and pixel i, where ``a`` ``(N, C, H, W)``,
    ``bp`` its padded partner, ``w1`` ``(K, C)``, ``w2`` ``(O, K)``. The gradient (for eval-mode
    attribution; training runs the plain cells) recomputes the hidden layers with standard ops."""

    def __init__(self, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        taps, tag = kernel_size * kernel_size, f"k{kernel_size}-d{dilation}"
        diff, scatter = _diff_ops(kernel_size, dilation)

        def flat(x):  # (N, ch, T, L) -> (ch, N*T*L)
            return ops.transpose(x, (1, 0, 2, 3)).reshape(x.shape[1], -1)

        def bprop(a, bp, w1, b1, w2, b2, out, dout):
            n, c, h, w = a.shape
            r = ops.relu(diff(a, bp)).reshape(n, c, taps, h * w)
            hid = ops.relu(ops.conv2d(r, w1.reshape(w1.shape[0], c, 1, 1), b1))
            g = dout.reshape(n, dout.shape[1], taps, h * w)
            g_flat, hid_flat = flat(g), flat(hid)
            dw2, db2 = ops.matmul(g_flat, hid_flat.T), g_flat.sum(1)
            dh = ops.conv2d(g, ops.transpose(w2, (1, 0)).reshape(w2.shape[1], w2.shape[0], 1, 1)) * (hid > 0)
            dh_flat = flat(dh)
            dw1 = ops.matmul(dh_flat, flat(r).T)
            dr = ops.conv2d(dh, ops.transpose(w1, (1, 0)).reshape(c, w1.shape[0], 1, 1)) * (r > 0)
            dr = dr.reshape(n, c, taps, h, w)
            return dr.sum(2), -scatter(dr, bp), dw1, dh_flat.sum(1), dw2, db2

        self.op = custom_primitive("pairwise_mlp", "", lambda a, bp, w1, b1, w2, b2: (a[0], w2[0], taps, a[2], a[3]),
                          bprop, inputs=6, tag=tag)

    def extra_macs(self, inputs, output) -> int:
        """gamma's two 1x1 convolutions per tap and pixel, as the plain cells' hooks would count them."""
        w1, w2 = inputs[2], inputs[4]
        positions = output.shape[0] * output.shape[2] * output.shape[3] * output.shape[4]
        return int(positions * (w1.shape[0] * w1.shape[1] + w2.shape[0] * w2.shape[1]))

    def construct(self, a, bp, w1, b1, w2, b2):
        f32 = ms.float32
        return self.op(a.astype(f32), bp.astype(f32), w1.astype(f32), b1.astype(f32), w2.astype(f32),
                       b2.astype(f32)).astype(a.dtype)


class FusedWindowAttention(nn.Cell):
    """ACmix's sliding-window attention form ``construct(q, k, v, pe, q_pe)`` (see
    :class:`convattn.layers.acmix.UnfoldWindowAttention` for the contract; stride 1 or 2): logits
    ``q_i . (k_j - pe_j)`` and the weighted sum of values are one kernel each; nothing larger than the
    ``(B*head, k*k, Ho, Wo)`` softmax exists, forward or backward."""
    form = "fused"

    def __init__(self, kernel_att: int, stride: int, padding: int) -> None:
        super().__init__()
        from .pad import FusedReflectionPad2d, FusedReflectPadSub

        self.reflect = FusedReflectionPad2d(padding) if padding > 0 else nn.Identity()
        self.reflect_sub = FusedReflectPadSub(padding) if padding > 0 else None
        # heads are folded into the batch, so one weight group per (sample, head)
        self.fused_logits = LocalCorrelate("contiguous", kernel_att, 1, 1, stride)
        self.fused_softmax = TapSoftmax()
        self.fused_sum = LocalAggregate("contiguous", kernel_att, 1, 1, stride)

    def construct(self, q, k, v, pe, q_pe):
        # q_i.(k_j + pe_i - pe_j): q_i.pe_i is constant over j and cancels in the softmax over j
        kp = self.reflect(k - pe) if self.reflect_sub is None else self.reflect_sub(k, pe)
        att = self.fused_softmax(self.fused_logits(q, kp))
        return self.fused_sum(att, self.reflect(v))
