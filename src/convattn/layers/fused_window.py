"""Fused local-window operators on CPU: MindSpore ``ops.Custom`` (AOT) kernels with their gradients.

SAN's aggregation and ACmix's sliding-window attention both reduce to two operators over a k x k window of
a padded map (stride 1, dilation d, taps in ``F.unfold`` order ``o_t``), here computed without the
``k*k``-expanded tensor that a gather (unfold) builds:

* :class:`LocalAggregate` ``(w, xp) -> y``: ``y[c, p] = sum_t w[g(c), t, p] * xp[c, p + o_t]``
  (SAN: ``w`` = attention weights, ``xp`` = padded beta(x); ACmix: ``w`` = softmax, ``xp`` = padded values);
* :class:`LocalCorrelate` ``(a, xp) -> w``: ``w[g, t, p] = sum_{c in g} a[c, p] * xp[c, p + o_t]``
  (ACmix's logits q . k_j; also the weight gradient of the aggregation).

``g(c)`` is ``c mod G`` (``'interleaved'``, SAN's weight sharing) or ``c // (C/G)`` (``'contiguous'``,
attention heads). Each is the other's gradient (plus a transposed aggregation for the map), so forward and
backward never hold more than the weights ``(N, G, k*k, H, W)`` and maps of the input's size.

The C++ source (``kernels/local_window.cc``) is compiled with the system ``g++`` on first use into
``$CONVATTN_KERNEL_CACHE`` (default ``~/.cache/convattn/kernels``), keyed by the source hash and the flags;
the build is atomic. Where there is no compiler, or the device is not the CPU (Ascend and GPU keep the
standard-op formulations), :func:`fused_kernels_available` is False and the layers fall back, with one
warning saying why. ``CONVATTN_FUSED_KERNELS=0`` turns the kernels off; ``CONVATTN_NUM_THREADS`` caps the
threads they use (default: the CPUs this process may run on).

The kernels are float32; other dtypes are cast around them. ``ops.Custom`` nodes can be exported neither to
ONNX nor portably to MINDIR, so :func:`convattn.deploy.prepare_for_export` switches every layer back to its
standard-op formulation (:func:`set_fused_kernels`).
"""
import hashlib
import os
import subprocess
import tempfile
import warnings
from typing import Optional

import mindspore as ms
from mindspore import nn, ops

from .helpers import invalidate_graph_cache

__all__ = ["LocalAggregate", "LocalCorrelate", "fused_kernels_available", "kernel_library", "set_fused_kernels",
           "resolve_fused"]

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "local_window.cc")
_MODES = ("interleaved", "contiguous")
_STATE = {"path": None, "error": None, "tried": False, "warned": False}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_flags():
    flags = ["-std=c++17", "-O3", "-shared", "-fPIC", "-pthread", "-fno-math-errno"]
    cpu = _cpu_flags()
    if {"avx2", "fma"} <= cpu:  # portable across the x86 machines of one cluster, unlike -march=native
        flags += ["-mavx2", "-mfma"]
    return flags


def kernel_library() -> Optional[str]:
    """Path of the compiled kernel library (built on first call), or None with the reason kept for the warning."""
    if _STATE["tried"]:
        return _STATE["path"]
    _STATE["tried"] = True
    try:
        with open(_SOURCE, "rb") as f:
            source = f.read()
        flags = _compile_flags()
        key = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:16]
        cache = os.environ.get("CONVATTN_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                         "convattn", "kernels")
        os.makedirs(cache, exist_ok=True)
        target = os.path.join(cache, f"local_window_{key}.so")
        if not os.path.exists(target):
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
            os.close(fd)
            try:
                cmd = [os.environ.get("CXX", "g++")] + flags + ["-o", tmp, _SOURCE]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
                os.replace(tmp, target)  # atomic: a concurrent process sees the old state or the whole library
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        _STATE["path"] = target
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _STATE["error"] = str(exc)
    return _STATE["path"]


def fused_kernels_available() -> bool:
    """True on the CPU backend when the kernels are enabled and compiled (compiles them on first call)."""
    if os.environ.get("CONVATTN_FUSED_KERNELS", "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    if ms.get_context("device_target") != "CPU":
        return False
    if kernel_library() is None:
        if not _STATE["warned"]:
            _STATE["warned"] = True
            warnings.warn("convattn: the fused CPU local-window kernels could not be built, so ACmix and SAN use "
                          f"their standard-op formulations (slower, more memory). Reason: {_STATE['error']}. "
                          "Install g++ (or set CXX) to enable them.", RuntimeWarning, stacklevel=2)
        return False
    return True


def resolve_fused(attn_impl: str, fused_name: str, fallback: str, owner: str) -> str:
    """Turn ``attn_impl='auto'`` into ``fused_name`` when the kernels are available, else ``fallback``; an
    explicit request for the fused path where it is unavailable is an error naming the cause."""
    if attn_impl == "auto":
        return fused_name if fused_kernels_available() else fallback
    if attn_impl == fused_name and not fused_kernels_available():
        reason = _STATE["error"] or f"device target is {ms.get_context('device_target')}, or CONVATTN_FUSED_KERNELS=0"
        raise RuntimeError(f"{owner}: attn_impl={fused_name!r} needs the fused CPU kernels, which are unavailable "
                           f"({reason}); use attn_impl='auto' to fall back to '{fallback}'")
    return attn_impl


def _custom(func: str, mode: str, out_shape, bprop=None):
    return ops.Custom(f"{kernel_library()}:{func}_{mode}", out_shape=out_shape, out_dtype=lambda a, b: a,
                      func_type="aot", bprop=bprop)


def _make_ops(mode: str, kernel_size: int, dilation: int, groups: int):
    """``(agg, corr)`` Custom primitives with their bprops for one window geometry and weight-group count."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if kernel_library() is None:
        raise RuntimeError(f"the fused local-window kernels are unavailable: {_STATE['error']}")
    ext = dilation * (kernel_size - 1)
    taps = kernel_size * kernel_size

    def agg_shape(w, xp):
        return (xp[0], xp[1], w[3], w[4])

    def corr_shape(a, xp):
        return (a[0], groups, taps, a[2], a[3])

    def agg_t_shape(w, gy):
        return (gy[0], gy[1], gy[2] + ext, gy[3] + ext)

    agg_t = _custom("agg_t", mode, agg_t_shape)
    corr_plain = _custom("corr", mode, corr_shape)
    agg_plain = _custom("agg", mode, agg_shape)

    def agg_bprop(w, xp, out, dout):
        return corr_plain(dout, xp), agg_t(w, dout)

    def corr_bprop(a, xp, out, dout):
        return agg_plain(dout, xp), agg_t(dout, a)

    return _custom("agg", mode, agg_shape, agg_bprop), _custom("corr", mode, corr_shape, corr_bprop)


class LocalAggregate(nn.Cell):
    """``construct(w, xp)``: weights ``(N, G, k*k, H, W)`` and the padded map ``(N, C, H + d(k-1), W + d(k-1))``
    -> ``(N, C, H, W)``; ``C`` divisible by ``G``, weight group of channel c by ``mode``. float32 inside."""

    def __init__(self, mode: str, kernel_size: int, dilation: int, groups: int) -> None:
        super().__init__()
        self.op, _ = _make_ops(mode, kernel_size, dilation, groups)

    def construct(self, w, xp):
        dtype = xp.dtype
        return self.op(w.astype(ms.float32), xp.astype(ms.float32)).astype(dtype)


class LocalCorrelate(nn.Cell):
    """``construct(a, xp)``: ``a`` ``(N, C, H, W)`` and the padded map -> ``(N, groups, k*k, H, W)``,
    ``w[g, t, p] = sum_{c in g} a[c, p] * xp[c, p + o_t]``. float32 inside."""

    def __init__(self, mode: str, kernel_size: int, dilation: int, groups: int) -> None:
        super().__init__()
        _, self.op = _make_ops(mode, kernel_size, dilation, groups)

    def construct(self, a, xp):
        dtype = a.dtype
        return self.op(a.astype(ms.float32), xp.astype(ms.float32)).astype(dtype)


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
    invalidate_graph_cache(net)
    return names
