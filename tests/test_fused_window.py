"""The fused CPU local-window kernels (ops.Custom AOT): values and gradients against NumPy and against the
standard-op formulations of ACmix and SAN; the standard and export forms built without them; the switch and the
fallback when they cannot be built.

The official-fixture parity of ACmix and SAN runs through the fused path too (their default on CPU):
tests/test_acmix.py, tests/test_san.py.
"""
import os
import re
import shutil

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu import runtime as cpu_runtime
from convattn.cpu.window import FusedWindowAttention, LocalAggregate, LocalCorrelate, LocalDiff, TapSoftmax
from convattn.layers import GELU, ACmix, SAM, layer_norm, targets
from convattn.layers.lean_grad import LeanGELU
from convattn.layers.targets import build_target, cpu_backend_enabled, decide_form
from cell_grads import cpu_backend_cells, is_cpu_backend_cell
from test_local_attention import acmix_twins

# Only the tests that run the kernels need a compiler; the switch and fallback tests run everywhere (the fallback
# test exists for exactly the machines without one).
needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None or not cpu_backend_enabled(),
                                    reason="no C++ compiler, or CONVATTN_FUSED_KERNELS=0: the fused kernels are not "
                                           "built (layers fall back)")


def _np_pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")


def _group_index(c, channels, groups, mode):
    return c % groups if mode == "interleaved" else c // (channels // groups)


def _window(xp, oy, ox, h, wd, s):
    """xp[:, c, s*i + oy, s*j + ox] for the (h, wd) outputs."""
    return xp[:, :, oy:oy + s * (h - 1) + 1:s, ox:ox + s * (wd - 1) + 1:s]


def np_aggregate(w, xp, k, d, mode, s=1):
    n, c, hp, wp = xp.shape
    g, h, wd = w.shape[1], w.shape[3], w.shape[4]
    y = np.zeros((n, c, h, wd), np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, g, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            y[:, ch] += w[:, gi, t] * _window(xp, oy, ox, h, wd, s)[:, ch]
    return y


def np_correlate(a, xp, k, d, groups, mode, s=1):
    n, c, h, wd = a.shape
    w = np.zeros((n, groups, k * k, h, wd), np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, groups, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            w[:, gi, t] += a[:, ch] * _window(xp, oy, ox, h, wd, s)[:, ch]
    return w


class _Loss(nn.Cell):
    def __init__(self, op, probe):
        super().__init__()
        self.op = op
        self.probe = ms.Tensor(probe)

    def construct(self, u, v):
        return (self.op(u, v) * self.probe).sum()


def np_scatter(w, g, xp_shape, k, d, mode, s=1):
    """The transposed aggregation: dx[c, s*p + o_t] += w[g(c), t, p] * g[c, p]."""
    n, c = g.shape[:2]
    h, wd = g.shape[2], g.shape[3]
    out = np.zeros(xp_shape, np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, w.shape[1], mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            out[:, ch, oy:oy + s * (h - 1) + 1:s, ox:ox + s * (wd - 1) + 1:s] += w[:, gi, t] * g[:, ch]
    return out


# (k, dilation, stride, padded extra rows at stride 2): dilated, 1x1, and stride 2 on an exact / one-longer map
GEOMETRIES = [(3, 1, 1, 0), (5, 2, 1, 0), (1, 1, 1, 0), (3, 1, 2, 0), (3, 1, 2, 1)]


@needs_compiler
@pytest.mark.parametrize("mode", ["interleaved", "contiguous"])
@pytest.mark.parametrize("k,d,s,extra", GEOMETRIES, ids=[f"k{g[0]}d{g[1]}s{g[2]}+{g[3]}" for g in GEOMETRIES])
def test_kernels_match_numpy_values_and_gradients(ms_mode, mode, k, d, s, extra):
    rng = np.random.default_rng(0)
    n, c, g, h, wd = 2, 12, 3, 6, 7
    hp, wp = s * (h - 1) + d * (k - 1) + 1 + extra, s * (wd - 1) + d * (k - 1) + 1 + extra
    w = rng.standard_normal((n, g, k * k, h, wd)).astype(np.float32)
    xp = rng.standard_normal((n, c, hp, wp)).astype(np.float32)
    a = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    agg, corr = LocalAggregate(mode, k, d, g, s), LocalCorrelate(mode, k, d, g, s)

    y = agg(ms.Tensor(w), ms.Tensor(xp)).asnumpy()
    np.testing.assert_allclose(y, np_aggregate(w, xp, k, d, mode, s), rtol=1e-5, atol=1e-5)
    wc = corr(ms.Tensor(a), ms.Tensor(xp)).asnumpy()
    np.testing.assert_allclose(wc, np_correlate(a, xp, k, d, g, mode, s), rtol=1e-5, atol=1e-5)

    # gradients of sum(op(u, v) * probe), derived by hand from the definitions
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dw, dxp = ms.grad(_Loss(agg, gy), grad_position=(0, 1))(ms.Tensor(w), ms.Tensor(xp))
    np.testing.assert_allclose(dw.asnumpy(), np_correlate(gy, xp, k, d, g, mode, s), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dxp.asnumpy(), np_scatter(w, gy, xp.shape, k, d, mode, s), rtol=1e-5, atol=1e-5)

    gw = rng.standard_normal(wc.shape).astype(np.float32)
    da, dxp2 = ms.grad(_Loss(corr, gw), grad_position=(0, 1))(ms.Tensor(a), ms.Tensor(xp))
    np.testing.assert_allclose(da.asnumpy(), np_aggregate(gw, xp, k, d, mode, s), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dxp2.asnumpy(), np_scatter(gw, a, xp.shape, k, d, mode, s), rtol=1e-5, atol=1e-5)


class _Loss1(nn.Cell):
    def __init__(self, op, probe):
        super().__init__()
        self.op = op
        self.probe = ms.Tensor(probe)

    def construct(self, u):
        return (self.op(u) * self.probe).sum()


@needs_compiler
def test_tap_softmax_and_local_diff_match_numpy(ms_mode):
    rng = np.random.default_rng(7)
    x = (4 * rng.standard_normal((2, 3, 9, 5, 6))).astype(np.float32)
    y = TapSoftmax()(ms.Tensor(x)).asnumpy()
    e = np.exp(x - x.max(2, keepdims=True))
    want = e / e.sum(2, keepdims=True)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-7)
    probe = rng.standard_normal(x.shape).astype(np.float32)
    gx = ms.grad(_Loss1(TapSoftmax(), probe), grad_position=0)(ms.Tensor(x))
    np.testing.assert_allclose(gx.asnumpy(), want * (probe - (probe * want).sum(2, keepdims=True)),
                               rtol=1e-5, atol=1e-6)

    k, d = 3, 2
    a = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    xp = rng.standard_normal((2, 4, 5 + d * (k - 1), 6 + d * (k - 1))).astype(np.float32)
    r = LocalDiff(k, d)(ms.Tensor(a), ms.Tensor(xp)).asnumpy()
    want = np.stack([a - xp[:, :, d * (t // k):d * (t // k) + 5, d * (t % k):d * (t % k) + 6]
                     for t in range(k * k)], 2)
    np.testing.assert_allclose(r, want, rtol=0, atol=1e-6)
    probe = rng.standard_normal(r.shape).astype(np.float32)
    da, dxp = ms.grad(_Loss(LocalDiff(k, d), probe), grad_position=(0, 1))(ms.Tensor(a), ms.Tensor(xp))
    np.testing.assert_allclose(da.asnumpy(), probe.sum(2), rtol=1e-5, atol=1e-5)
    want_dxp = np.zeros(xp.shape)
    for t in range(k * k):
        oy, ox = d * (t // k), d * (t % k)
        want_dxp[:, :, oy:oy + 5, ox:ox + 6] -= probe[:, :, t]
    np.testing.assert_allclose(dxp.asnumpy(), want_dxp, rtol=1e-5, atol=1e-5)


@needs_compiler
def test_kernels_accept_float16():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 2, 9, 4, 5)).astype(np.float16)
    xp = rng.standard_normal((1, 4, 6, 7)).astype(np.float16)
    y = LocalAggregate("interleaved", 3, 1, 2)(ms.Tensor(w), ms.Tensor(xp))
    assert y.dtype == ms.float16
    np.testing.assert_allclose(y.asnumpy(), np_aggregate(w.astype(np.float32), xp.astype(np.float32), 3, 1,
                                                         "interleaved"), rtol=1e-2, atol=1e-2)


def _copy_params(src, dst):
    for (_, p1), (_, p2) in zip(src.parameters_and_names(), dst.parameters_and_names()):
        p2.set_data(p1.data.copy())


class _SquareLoss(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, inp):
        return (self.net(inp) ** 2).sum()


def _outputs_and_grads(net, x):
    net.set_train(True)
    fn = ms.value_and_grad(_SquareLoss(net), 0, net.trainable_params())
    loss, (gx, gw) = fn(x)
    return [loss.asnumpy(), gx.asnumpy()] + [g.asnumpy() for g in gw]


def _assert_close(a, b):
    scale = max(1.0, max(float(np.abs(u).max()) for u in a))
    for i, (u, v) in enumerate(zip(a, b)):
        assert float(np.abs(u - v).max()) <= 1e-5 * scale, (i, float(np.abs(u - v).max()), scale)


@needs_compiler
@pytest.mark.parametrize("sa_type", ["pairwise", "patchwise"])
def test_sam_fused_equals_gather(ms_mode, sa_type):
    ms.set_seed(3)
    ref = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=3, attn_impl="unfold")
    alt = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=3, attn_impl="fused")
    assert alt.fused and not ref.fused
    _copy_params(ref, alt)
    x = ms.Tensor(np.random.default_rng(3).standard_normal((2, 32, 7, 6)).astype(np.float32))
    _assert_close(_outputs_and_grads(ref, x), _outputs_and_grads(alt, x))


@needs_compiler
@pytest.mark.parametrize("sa_type,k", [("pairwise", 3), ("pairwise", 5), ("patchwise", 3)])
def test_sam_fused_inference_equals_gather_with_trained_statistics(ms_mode, sa_type, k):
    """Eval mode: pairwise runs gamma as one kernel with both BatchNorms folded on the fly. With non-trivial
    BN statistics, values and the eval-mode gradients (hand-written bprop) equal the plain cells."""
    ms.set_seed(9)
    rng = np.random.default_rng(9)
    ref = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=k, attn_impl="unfold")
    alt = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=k, attn_impl="fused")
    for name, p in ref.parameters_and_names():
        val = p.asnumpy()
        if "moving_variance" in name or "gamma" in name:
            val = rng.uniform(0.5, 2.0, val.shape).astype(np.float32)
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            val = rng.normal(0, 0.5, val.shape).astype(np.float32)
        p.set_data(ms.Tensor(val))
    _copy_params(ref, alt)
    x = ms.Tensor(rng.standard_normal((2, 32, 7, 6)).astype(np.float32))
    outs = []
    for net in (ref, alt):
        net.set_train(False)
        fn = ms.value_and_grad(_SquareLoss(net), 0, net.trainable_params())
        loss, (gx, gw) = fn(x)
        outs.append([net(x).asnumpy(), gx.asnumpy()] + [g.asnumpy() for g in gw])
    _assert_close(outs[0], outs[1])


@needs_compiler
@pytest.mark.parametrize("stride,hw", [(1, (9, 10)), (2, (9, 10)), (2, (11, 8))])
def test_acmix_fused_equals_unfold(ms_mode, stride, hw):
    ref, alt = acmix_twins(stride, seed=5, impl="fused")
    assert alt.attention_form() == "fused" and isinstance(alt.attention, FusedWindowAttention)
    assert ref.attention_form() == "unfold"
    rng = np.random.default_rng(6)
    x = ms.Tensor(rng.standard_normal((2, 16) + hw).astype(np.float32))
    _assert_close(_outputs_and_grads(ref, x), _outputs_and_grads(alt, x))


@needs_compiler
def test_strided_sam_keeps_the_gather():
    assert not SAM("pairwise", 16, 4, 16, 4, 3, stride=2, attn_impl="fused").fused  # SAN uses stride 1 only
    with pytest.raises(ValueError, match="stride 2"):
        LocalAggregate("contiguous", 3, 2, 1, stride=2)


@needs_compiler
def test_standard_and_export_forms_are_built_without_them(pynative):
    """The default CPU build runs the fused kernels; the same network built with ``cpu_backend=False`` (what export
    builds) has none, the standard cell at every name that was fused, and with the same weights the same output;
    its export-safe form has none either."""
    from convattn import create_model

    arch = dict(num_classes=10, layers=(1, 1, 1, 1, 1), base_width=32, kernels=(3, 3, 3, 3, 3))
    net = create_model("san10_pairwise", **arch)
    assert net.form.cpu_backend and net.form.target == "CPU"
    fused = [name for name, c in net.cells_and_names() if getattr(c, "fused", False) is True]
    assert fused, "the default CPU build should run the fused kernels"
    assert any(isinstance(c, LocalAggregate) for _, c in net.cells_and_names())
    std = create_model("san10_pairwise", cpu_backend=False, pretrained={p.name: p for p in net.get_parameters()},
                       **arch)
    assert not std.form.cpu_backend and cpu_backend_cells(std) == []
    std_cells = dict(std.cells_and_names())
    assert set(fused) <= set(std_cells)  # the same cells, in their standard form
    assert not any(getattr(std_cells[name], "fused", False) or is_cpu_backend_cell(std_cells[name]) for name in fused)
    net.set_train(False)
    std.set_train(False)
    x = ms.Tensor(np.random.default_rng(6).standard_normal((1, 3, 64, 64)).astype(np.float32))
    np.testing.assert_allclose(std(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    export = create_model("san10_pairwise", export_safe=True, **arch)
    assert cpu_backend_cells(export) == [] and not any(getattr(c, "fused", False) for _, c in export.cells_and_names())


def test_environment_switch_and_bad_requests(monkeypatch):
    monkeypatch.setenv("CONVATTN_FUSED_KERNELS", "0")
    assert not cpu_backend_enabled()
    form = decide_form("CPU")
    assert not form.cpu_backend and form.note == "CONVATTN_FUSED_KERNELS=0"
    with build_target("CPU"):
        assert SAM("pairwise", 16, 4, 16, 4, 3).attn_impl == "unfold"
        assert ACmix(16, 32, 7, head=4).attn_impl == "fast"
        assert type(GELU()) is LeanGELU and type(layer_norm(8)) is nn.LayerNorm
        with pytest.raises(RuntimeError, match="attn_impl='auto'"):
            SAM("pairwise", 16, 4, 16, 4, 3, attn_impl="fused")
    with pytest.raises(RuntimeError, match="CONVATTN_FUSED_KERNELS=0"):
        decide_form("CPU", cpu_backend=True)
    with pytest.raises(ValueError, match="attn_impl must be"):
        SAM("pairwise", 16, 4, 16, 4, 3, attn_impl="shift")
    with pytest.raises(ValueError, match="mode must be one of"):
        LocalAggregate("rows", 3, 1, 1)


def test_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path):
    """No working compiler: one warning naming the cause, the layers are built from their standard ops, nothing
    half-written."""
    monkeypatch.setattr(cpu_runtime, "_RUNTIME", None)  # a fresh runtime for this test; the old one comes back
    monkeypatch.setattr(targets, "_WARNED", set())
    monkeypatch.setenv("CONVATTN_FUSED_KERNELS", "1")  # the backend asked for, even where the suite runs without
    monkeypatch.setenv("CONVATTN_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with pytest.warns(RuntimeWarning, match="CPU backend unavailable .*failed"):
        form = decide_form("CPU")
    assert not form.cpu_backend and not cpu_runtime.runtime().available
    with build_target(form):
        sam = SAM("patchwise", 16, 4, 16, 4, 3)
    assert sam.attn_impl == "unfold" and not sam.fused and cpu_backend_cells(sam) == []
    assert list(tmp_path.iterdir()) == []  # the failed build left no partial library behind
    assert "failed" in cpu_runtime.runtime().reason and "failed" in form.note  # the public query names the error
    with pytest.raises(RuntimeError, match="false.*failed"):
        with build_target(form):
            SAM("patchwise", 16, 4, 16, 4, 3, attn_impl="fused")
    with pytest.raises(RuntimeError, match="CPU backend is unavailable .*failed"):
        decide_form("CPU", cpu_backend=True)


def test_only_the_runtime_compiles_and_only_the_targets_module_reaches_the_backend():
    """The C++ build lives in cpu/runtime.py: no other module of the CPU backend or of the layers runs a compiler
    or reads the runtime's state; and no layer module but targets.py imports the CPU backend (layers ask
    :func:`convattn.layers.targets.cpu_cell`)."""
    from pathlib import Path

    cpu_dir = Path(cpu_runtime.__file__).parent
    layers = Path(targets.__file__).parent
    offenders = [f"{p.parent.name}/{p.name}" for p in list(cpu_dir.glob("*.py")) + list(layers.glob("*.py"))
                 if p.name != "runtime.py" and re.search(r"\bsubprocess\b|_RUNTIME\b", p.read_text())]
    assert offenders == [], f"modules that build kernels or read the runtime's state: {offenders}"
    backend_import = re.compile(r"^\s*(from\s+(\.\.|convattn\.)cpu\b|import\s+convattn\.cpu\b|"
                                r"from\s+(\.\.|convattn)\s+import\s+cpu\b)", re.M)
    importers = [p.name for p in layers.glob("*.py") if p.name != "targets.py" and backend_import.search(p.read_text())]
    assert importers == [], f"layer modules that import the CPU backend themselves: {importers}"
    assert backend_import.search((layers / "targets.py").read_text())  # the pattern does see an import


@needs_compiler
def test_network_with_two_footprints_trains_in_graph_mode():
    """GRAPH mode identifies Custom primitives by their attributes: kernels of different footprints in one
    backward graph must not share a shape inference (regression: san10_pairwise's k=3 and k=7 stages)."""
    from convattn import create_model

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = create_model("san10_pairwise", num_classes=10, layers=(1, 1, 1, 1, 1), base_width=32,
                           kernels=(3, 5, 5, 3, 3))
        net.set_train(True)
        x = ms.Tensor(np.random.default_rng(8).standard_normal((2, 3, 64, 64)).astype(np.float32))
        loss_fn = _SquareLoss(net)
        grads = ms.grad(loss_fn, None, net.trainable_params())(x)
        assert len(grads) == len(net.trainable_params())
        assert all(np.isfinite(g.asnumpy()).all() for g in grads)
    finally:
        ms.set_context(mode=previous)
