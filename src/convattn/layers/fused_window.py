"""Fused local-window operators on CPU: MindSpore ``ops.Custom`` (AOT) kernels with their gradients.

SAN's aggregation and ACmix's sliding-window attention both reduce to two operators over a k x k window of
a padded map (stride 1 with dilation d, or stride 2; taps in ``F.unfold`` order ``o_t``), here computed without the
``k*k``-expanded tensor that a gather (unfold) builds:

* :class:`LocalAggregate` ``(w, xp) -> y``: ``y[c, p] = sum_t w[g(c), t, p] * xp[c, p + o_t]``
  (SAN: ``w`` = attention weights, ``xp`` = padded beta(x); ACmix: ``w`` = softmax, ``xp`` = padded values);
* :class:`LocalCorrelate` ``(a, xp) -> w``: ``w[g, t, p] = sum_{c in g} a[c, p] * xp[c, p + o_t]``
  (ACmix's logits q . k_j; also the weight gradient of the aggregation);
* :class:`TapSoftmax`: the softmax over the tap axis of ``(N, G, k*k, H, W)`` (a strided-axis softmax is
  slow through the standard op);
* :class:`LocalDiff` ``(a, xp) -> r``: ``r[c, t, p] = a[c, p] - xp[c, p + o_t]`` (SAN's subtraction relation
  and position term ``p_i - p_j``; this one *is* k*k-expanded, as the official relation tensor is);
* :class:`PairwiseMlp`: SAN's pairwise weights at inference — relation, ReLU, 1x1, ReLU, 1x1 per tap and
  pixel in one pass (BatchNorms folded by the caller), so the relation tensor never exists.

``g(c)`` is ``c mod G`` (``'interleaved'``, SAN's weight sharing) or ``c // (C/G)`` (``'contiguous'``,
attention heads). Each is the other's gradient (plus a transposed aggregation for the map), so forward and
backward never hold more than the weights ``(N, G, k*k, H, W)`` and maps of the input's size.

The C++ source (``kernels/local_window.cc``) is built by :mod:`convattn.layers.kernel_build` (compile on first
use, on-disk cache, atomic write); this module only asks it for the library. Where there is no compiler
:func:`fused_kernels_available` is False and the layers fall back, with one warning saying why. Only networks built for the CPU target use them (GPU and Ascend keep the
standard-op formulations): :mod:`convattn.layers.targets` decides. ``CONVATTN_FUSED_KERNELS=0`` turns the kernels off; ``CONVATTN_NUM_THREADS`` caps the
threads they use (default: the CPUs this process may run on).

The kernels are float32; other dtypes are cast around them. ``ops.Custom`` nodes can be exported neither to
ONNX nor portably to MINDIR, so :func:`convattn.deploy.prepare_for_export` switches every layer back to its
standard-op formulation (:func:`set_fused_kernels`).
"""
import mindspore as ms
from mindspore import nn, ops

from .helpers import reselect_implementations
from ..cpu.runtime import runtime


def kernel_library():
    return runtime().path


def unavailable_reason():
    return runtime().reason


def fused_kernels_available():
    return runtime().available

__all__ = ["LocalAggregate", "LocalCorrelate", "LocalDiff", "PairwiseMlp", "TapSoftmax", "Float32Cell", "custom_primitive",
           "require_library", "fused_kernels_available", "kernel_library", "set_fused_kernels"]

_MODES = ("interleaved", "contiguous")


def custom_primitive(func: str, mode: str, out_shape, bprop=None, inputs: int = 2, tag: str = "", out_dtype=None):
    """One Custom primitive. ``tag`` names the geometry its shape function and bprop close over: GRAPH mode
    identifies Custom primitives by their attributes (two ``diff`` ops of different footprints would otherwise
    share one shape inference in the backward graph), so every geometry gets its own attribute value.
    ``out_dtype`` (default: the dtype of a float input, by ``inputs``) for kernels with other inputs or several
    outputs."""
    name = f"{func}_{mode}" if mode else func
    dtype = out_dtype or {1: lambda a: a, 2: lambda a, b: a, 3: lambda a, b, c: b,
                          6: lambda a, b, c, d, e, f: a}[inputs]
    op = ops.Custom(f"{kernel_library()}:{name}", out_shape=out_shape, out_dtype=dtype, func_type="aot",
                    bprop=bprop)
    op.add_prim_attr("convattn_geometry", tag)
    return op


def require_library():
    if kernel_library() is None:
        raise RuntimeError(f"the fused local-window kernels are unavailable: {unavailable_reason()}")


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


class Float32Cell(nn.Cell):
    """A cell around float32 kernels. AMP (``to_float(float16)``, O2/O3) flags every sub-cell, and a flagged cell
    in PYNATIVE mode casts the inputs of each primitive it runs to float16, past the casts to float32 in
    ``construct``; these cells keep the float32 flag instead (their callers' dtype comes back on the output)."""

    def add_flags_recursive(self, **flags):
        if flags.get("fp16") or flags.get("bf16"):
            flags.update(fp16=False, bf16=False, fp32=True)
        return super().add_flags_recursive(**flags)


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


def set_fused_kernels(net: nn.Cell, enabled: bool) -> list:
    """Switch every layer with a ``fused`` flag in ``net`` to (``enabled=False``: away from) the fused kernels;
    returns the names of the cells switched. Enabling only takes where the kernels are available."""
    on = bool(enabled) and fused_kernels_available()
    names = []
    for name, cell in net.cells_and_names():
        if isinstance(getattr(cell, "fused", None), bool) and getattr(cell, "fused_capable", True):
            if cell.fused != on:
                names.append(name)
            cell.fused = on
    reselect_implementations(net)  # each layer picks the implementation object of its new state once
    return names
