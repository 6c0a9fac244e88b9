"""The fused CPU local-window kernels (ops.Custom AOT): values and gradients against NumPy and against the
standard-op formulations of ACmix and SAN; switching off for export; the fallback when they cannot be built.

The official-fixture parity of ACmix and SAN runs through the fused path too (their default on CPU):
tests/test_acmix.py, tests/test_san.py.
"""
import os
import shutil

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.layers import ACmix, SAM, fused_kernels_available, set_fused_kernels
from convattn.layers import fused_window
from convattn.layers.fused_window import LocalAggregate, LocalCorrelate

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="no C++ compiler: the fused kernels cannot be built (layers fall back)")


def _np_pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")


def _group_index(c, channels, groups, mode):
    return c % groups if mode == "interleaved" else c // (channels // groups)


def np_aggregate(w, xp, k, d, mode):
    n, c, hp, wp = xp.shape
    g, h, wd = w.shape[1], w.shape[3], w.shape[4]
    y = np.zeros((n, c, h, wd), np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, g, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            y[:, ch] += w[:, gi, t] * xp[:, ch, oy:oy + h, ox:ox + wd]
    return y


def np_correlate(a, xp, k, d, groups, mode):
    n, c, h, wd = a.shape
    w = np.zeros((n, groups, k * k, h, wd), np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, groups, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            w[:, gi, t] += a[:, ch] * xp[:, ch, oy:oy + h, ox:ox + wd]
    return w


class _Loss(nn.Cell):
    def __init__(self, op, probe):
        super().__init__()
        self.op = op
        self.probe = ms.Tensor(probe)

    def construct(self, u, v):
        return (self.op(u, v) * self.probe).sum()


@pytest.mark.parametrize("mode", ["interleaved", "contiguous"])
@pytest.mark.parametrize("k,d", [(3, 1), (5, 2), (1, 1)])
def test_kernels_match_numpy_values_and_gradients(ms_mode, mode, k, d):
    rng = np.random.default_rng(0)
    n, c, g, h, wd = 2, 12, 3, 6, 7
    ext = d * (k - 1)
    w = rng.standard_normal((n, g, k * k, h, wd)).astype(np.float32)
    xp = rng.standard_normal((n, c, h + ext, wd + ext)).astype(np.float32)
    a = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    agg, corr = LocalAggregate(mode, k, d, g), LocalCorrelate(mode, k, d, g)

    y = agg(ms.Tensor(w), ms.Tensor(xp)).asnumpy()
    np.testing.assert_allclose(y, np_aggregate(w, xp, k, d, mode), rtol=1e-5, atol=1e-5)
    wc = corr(ms.Tensor(a), ms.Tensor(xp)).asnumpy()
    np.testing.assert_allclose(wc, np_correlate(a, xp, k, d, g, mode), rtol=1e-5, atol=1e-5)

    # gradients of sum(op(u, v) * probe), derived by hand from the definitions
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dw, dxp = ms.grad(_Loss(agg, gy), grad_position=(0, 1))(ms.Tensor(w), ms.Tensor(xp))
    np.testing.assert_allclose(dw.asnumpy(), np_correlate(gy, xp, k, d, g, mode), rtol=1e-5, atol=1e-5)
    want_dxp = np.zeros_like(xp, dtype=np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, g, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            want_dxp[:, ch, oy:oy + h, ox:ox + wd] += w[:, gi, t] * gy[:, ch]
    np.testing.assert_allclose(dxp.asnumpy(), want_dxp, rtol=1e-5, atol=1e-5)

    gw = rng.standard_normal(wc.shape).astype(np.float32)
    da, dxp2 = ms.grad(_Loss(corr, gw), grad_position=(0, 1))(ms.Tensor(a), ms.Tensor(xp))
    np.testing.assert_allclose(da.asnumpy(), np_aggregate(gw, xp, k, d, mode), rtol=1e-5, atol=1e-5)
    want = np.zeros_like(xp, dtype=np.float64)
    for ch in range(c):
        gi = _group_index(ch, c, g, mode)
        for t in range(k * k):
            oy, ox = d * (t // k), d * (t % k)
            want[:, ch, oy:oy + h, ox:ox + wd] += gw[:, gi, t] * a[:, ch]
    np.testing.assert_allclose(dxp2.asnumpy(), want, rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("sa_type", ["pairwise", "patchwise"])
def test_sam_fused_equals_gather(ms_mode, sa_type):
    ms.set_seed(3)
    ref = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=3, attn_impl="unfold")
    alt = SAM(sa_type, 32, 4, 16, share_planes=4, kernel_size=3, attn_impl="fused")
    assert alt.fused and not ref.fused
    _copy_params(ref, alt)
    x = ms.Tensor(np.random.default_rng(3).standard_normal((2, 32, 7, 6)).astype(np.float32))
    _assert_close(_outputs_and_grads(ref, x), _outputs_and_grads(alt, x))


def test_acmix_fused_equals_unfold(ms_mode):
    ms.set_seed(4)
    ref = ACmix(16, 32, 7, head=4, attn_impl="unfold")
    alt = ACmix(16, 32, 7, head=4, attn_impl="fused")
    assert alt.fused
    rng = np.random.default_rng(5)
    for (_, p1), (_, p2) in zip(ref.parameters_and_names(), alt.parameters_and_names()):
        val = p1.asnumpy()
        if p1.name.endswith("conv1.weight") or p1.name.endswith("conv_p.weight"):
            val = val + rng.standard_normal(val.shape).astype(np.float32)  # sharper, non-uniform attention
        p1.set_data(ms.Tensor(val))
        p2.set_data(ms.Tensor(val))
    x = ms.Tensor(rng.standard_normal((2, 16, 9, 10)).astype(np.float32))
    _assert_close(_outputs_and_grads(ref, x), _outputs_and_grads(alt, x))


def test_stride_two_layers_keep_standard_ops():
    assert not ACmix(16, 32, 7, head=4, stride=2, attn_impl="fused").fused  # runs the blocked path
    assert not SAM("pairwise", 16, 4, 16, 4, 3, stride=2, attn_impl="fused").fused  # runs the gather


def test_set_fused_kernels_and_export_switch_them_off(tmp_path):
    from convattn import create_model
    from convattn.deploy import prepare_for_export

    net = create_model("san10_pairwise", num_classes=10, layers=(1, 1, 1, 1, 1), base_width=32,
                       kernels=(3, 3, 3, 3, 3))
    fused = [name for name, c in net.cells_and_names() if getattr(c, "fused", False) is True]
    assert fused, "the default CPU build should run the fused kernels"
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(6).standard_normal((1, 3, 64, 64)).astype(np.float32))
    before = net(x).asnumpy()
    report = prepare_for_export(net, onnx_safe=False)
    assert sorted(report["fused_kernels_off"]) == sorted(fused)
    assert not any(getattr(c, "fused", False) for _, c in net.cells_and_names())
    after = net(x).asnumpy()
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    assert sorted(set_fused_kernels(net, True)) == sorted(fused)


def test_environment_switch_and_bad_requests(monkeypatch):
    monkeypatch.setenv("CONVATTN_FUSED_KERNELS", "0")
    assert not fused_kernels_available()
    assert SAM("pairwise", 16, 4, 16, 4, 3).attn_impl == "unfold"
    assert ACmix(16, 32, 7, head=4).attn_impl == "fast"
    with pytest.raises(RuntimeError, match="attn_impl='auto'"):
        SAM("pairwise", 16, 4, 16, 4, 3, attn_impl="fused")
    with pytest.raises(ValueError, match="attn_impl must be"):
        SAM("pairwise", 16, 4, 16, 4, 3, attn_impl="shift")
    with pytest.raises(ValueError, match="mode must be one of"):
        LocalAggregate("rows", 3, 1, 1)


def test_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path):
    """No working compiler: one warning naming the cause, the layers run their standard ops, nothing half-written."""
    monkeypatch.setattr(fused_window, "_STATE", {"path": None, "error": None, "tried": False, "warned": False})
    monkeypatch.setenv("CONVATTN_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with pytest.warns(RuntimeWarning, match="could not be built"):
        assert not fused_kernels_available()
    assert SAM("patchwise", 16, 4, 16, 4, 3).attn_impl == "unfold"
    assert list(tmp_path.iterdir()) == []  # the failed build left no partial library behind
