"""The fused CPU LayerNorm (last axis and NCHW channels), Dense and BatchNorm kernels: the same values and
gradients as MindSpore's LayerNorm, Dense and BatchNorm, built only for the CPU target with the CPU backend, never in
the standard or export form."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.gemm import gemm_isa, gemm_library, gemm_unavailable_reason
from convattn.cpu.linear import Linear
from convattn.cpu.norm import FusedBatchNorm2d, FusedChannelLayerNorm, FusedLayerNorm
from convattn.cpu.runtime import runtime
from convattn.layers import (BatchNormAct2d, ChannelLayerNorm, batch_norm2d, channel_layer_norm, dense, layer_norm)
from convattn.layers.targets import build_target
from cell_grads import assert_same_outputs, build_small, cpu_backend_cells, standard_twin, value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


def _layer_norm64(x, gamma, beta, eps, axis):
    """float64 LayerNorm over ``axis`` and its gradients for the loss ``sum(y * dy)``: (y, vjp)."""
    x = x.astype(np.float64)
    axis %= x.ndim
    shape = [1] * x.ndim
    shape[axis] = -1
    g, b = gamma.astype(np.float64).reshape(shape), beta.astype(np.float64).reshape(shape)
    mean = x.mean(axis, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis, keepdims=True) + eps)
    xhat = (x - mean) * rstd

    def vjp(dy):
        dy = dy.astype(np.float64)
        others = tuple(i for i in range(x.ndim) if i != axis)
        gx = dy * g
        dx = rstd * (gx - gx.mean(axis, keepdims=True) - xhat * (gx * xhat).mean(axis, keepdims=True))
        return dx, (dy * xhat).sum(others), dy.sum(others)

    return xhat * g + b, vjp


# shapes with a channel count that is not a multiple of the 8-wide accumulators and a pixel count that is not a
# multiple of the kernel's 256-pixel block; mean 2, scale 3 so that a one-pass variance would lose digits
@pytest.mark.parametrize("kind,shape,eps", [("last", (4, 50, 96), 1e-5), ("last", (3, 7, 13), 1e-6),
                                            ("channels", (2, 64, 9, 11), 1e-6), ("channels", (2, 5, 17, 19), 1e-5)])
def test_fused_layer_norm_matches_layer_norm_and_its_gradients(ms_mode, kind, shape, eps):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    c = shape[-1] if kind == "last" else shape[1]
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    cells = []
    for fused in (True, False):  # the factory's cell with and without the CPU backend
        with build_target("CPU", cpu_backend=fused):
            cell = layer_norm(c, eps) if kind == "last" else channel_layer_norm(c, eps)
        cell.gamma.set_data(ms.Tensor(gamma))
        cell.beta.set_data(ms.Tensor(beta))
        cells.append(cell)
    assert isinstance(cells[0], FusedChannelLayerNorm if kind == "channels" else FusedLayerNorm) and cells[0].fused
    assert type(cells[1]) is (ChannelLayerNorm if kind == "channels" else nn.LayerNorm)
    assert not getattr(cells[1], "fused", False) and cells[0].epsilon == cells[1].epsilon == eps
    y_ref, vjp = _layer_norm64(x, gamma, beta, eps, -1 if kind == "last" else 1)
    refs = vjp(dy)
    (y, grads), (y_std, grads_std) = (value_and_grads(cell, x, dy) for cell in cells)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5)
    for got, std, ref in zip(grads, grads_std, refs):
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * scale)
        np.testing.assert_allclose(got, std, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("gemm,bias", [(True, True), (True, False), (False, True)],
                         ids=["gemm", "gemm_no_bias", "matmul_bias"])
@pytest.mark.parametrize("shape", [(4, 50, 96), (7, 33)])
def test_fused_linear_matches_dense_and_its_gradients(ms_mode, shape, gemm, bias):
    """Both fused forms: the whole layer in the private oneDNN's sgemm (with or without a bias), and MindSpore's
    MatMul + the fused bias."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape[:-1] + (40,)).astype(np.float32)
    if gemm and gemm_unavailable_reason() is not None:
        pytest.skip(f"private GEMM library unavailable: {gemm_unavailable_reason()}")
    fused, plain = Linear(shape[-1], 40, has_bias=bias, gemm=gemm), nn.Dense(shape[-1], 40, has_bias=bias)
    assert fused.fused and isinstance(fused, nn.Dense)
    assert (fused.gemm_op is not None) == gemm and (fused.bias_op is None) == gemm
    for cell in (fused, plain):
        cell.weight.set_data(ms.Tensor(rng.standard_normal((40, shape[-1])).astype(np.float32)) if cell is fused
                             else fused.weight.data.copy())
        if bias:
            cell.bias.set_data(ms.Tensor(np.arange(40, dtype=np.float32) / 7) if cell is fused
                               else fused.bias.data.copy())
    (y, grads), (y_std, grads_std) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5)
    x2, dy2 = x.reshape(-1, shape[-1]).astype(np.float64), dy.reshape(-1, 40).astype(np.float64)
    refs = [dy2 @ fused.weight.asnumpy().astype(np.float64), dy2.T @ x2] + ([dy2.sum(0)] if bias else [])
    assert len(grads) == len(refs)
    for got, std, ref in zip(grads, grads_std, refs):
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(got, std, rtol=0, atol=1e-5 * scale)


def test_factories_follow_the_build_target():
    with build_target("CPU"):
        cpu = (layer_norm(8), dense(8, 4), dense(8, 4, has_bias=False), channel_layer_norm(8), ChannelLayerNorm(8))
    with build_target("CPU", cpu_backend=False):
        std = (layer_norm(8), dense(8, 4), channel_layer_norm(8))
    with build_target("Ascend"):
        asc = (layer_norm(8), dense(8, 4), channel_layer_norm(8))
    assert isinstance(cpu[0], FusedLayerNorm) and cpu[0].fused and cpu[0].epsilon == 1e-5
    assert isinstance(cpu[1], Linear) and cpu[1].fused and (cpu[1].gemm_op is not None) == runtime().gemm
    if runtime().gemm:  # without a bias only the GEMM form is faster than nn.Dense
        assert isinstance(cpu[2], Linear) and cpu[2].fused and cpu[2].bias is None
    else:
        assert type(cpu[2]) is nn.Dense
    assert isinstance(cpu[3], FusedChannelLayerNorm) and cpu[3].fused and cpu[3].epsilon == 1e-6
    assert type(cpu[4]) is ChannelLayerNorm and not getattr(cpu[4], "fused", False)  # the class is the standard form
    for cells in (std, asc):
        assert type(cells[0]) is nn.LayerNorm and type(cells[1]) is nn.Dense and type(cells[2]) is ChannelLayerNorm
    # a network built for Ascend (or export-safe) cannot take the CPU backend: asked for, that is an error
    with pytest.raises(ValueError, match="cpu_backend=True needs target='CPU'"):
        with build_target("Ascend", cpu_backend=True):
            pass
    with pytest.raises(ValueError, match="export_safe=False"):
        with build_target("CPU", export_safe=True, cpu_backend=True):
            pass


def test_models_use_them_and_their_standard_and_export_forms_do_not(pynative):
    net = build_small("swin_tiny", target="CPU")
    cells = dict(net.cells_and_names())
    norms = [n for n, c in cells.items() if isinstance(c, nn.LayerNorm)]
    linears = [n for n, c in cells.items() if isinstance(c, nn.Dense) and n.endswith(("fc1", "fc2", "qkv", "proj"))]
    assert norms and all(isinstance(cells[n], FusedLayerNorm) and cells[n].fused for n in norms)
    assert linears and all(isinstance(cells[n], Linear) and cells[n].fused for n in linears)
    twin = standard_twin(net, "swin_tiny")  # built with cpu_backend=False, the same weights
    twin_cells = dict(twin.cells_and_names())
    assert cpu_backend_cells(twin) == []
    assert all(type(twin_cells[n]) is nn.LayerNorm for n in norms)
    assert all(type(twin_cells[n]) is nn.Dense for n in linears)
    assert_same_outputs(net, twin, "swin_tiny", seed=2)

    van = build_small("van_b0", target="CPU")
    channel_norms = [c for _, c in van.cells_and_names() if isinstance(c, FusedChannelLayerNorm)]
    assert channel_norms and all(c.fused for c in channel_norms)
    assert not any(type(c) is ChannelLayerNorm for _, c in van.cells_and_names())
    export = build_small("van_b0", target="CPU", export_safe=True)  # the form export builds for ONNX
    assert cpu_backend_cells(export) == [] and not any(getattr(c, "fused", False) for _, c in export.cells_and_names())
    assert len([c for _, c in export.cells_and_names() if type(c) is ChannelLayerNorm]) == len(channel_norms)


def test_private_gemm_library_is_capped_at_avx512_where_the_cpu_has_it():
    """The Dense GEMM's oneDNN copy runs AVX-512 while MindSpore's own oneDNN stays at the AVX2 cap that its
    convolutions need (convattn._env)."""
    from convattn.cpu.runtime import cpu_flags

    if gemm_unavailable_reason() is not None:
        pytest.skip(f"private GEMM library unavailable: {gemm_unavailable_reason()}")
    import os
    assert gemm_library().endswith(".so") and "CONVATTN_GEMM_LIBRARY" not in os.environ  # passed by an init call
    expected = 0x27 if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= cpu_flags() else None
    if expected is not None:
        assert gemm_isa() == expected


def _bn_inputs(seed, shape):
    """x (mean 1, scale 2), dy and the four per-channel values (gamma, beta, running mean, running variance)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(1.0, 2.0, shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    stats = [rng.standard_normal(c).astype(np.float32) for _ in range(3)] + [rng.uniform(0.5, 2.0, c).astype(np.float32)]
    return x, dy, stats


def _set_bn(cell, stats, training):
    for p, v in zip((cell.gamma, cell.beta, cell.moving_mean, cell.moving_variance), stats):
        p.set_data(ms.Tensor(v))
    cell.set_train(training)


def _assert_fused_standard_float64(fused, standard, want):
    """Each array of ``fused`` equals its float64 reference and the standard form's array, to 1e-5 of the
    reference's scale (at least 1)."""
    for got, std, ref in zip(fused, standard, want):
        tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
        np.testing.assert_allclose(got, std, rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (3, 4, 16, 16)])
def test_fused_batch_norm_eval_matches_batch_norm_and_its_gradients(ms_mode, shape):
    """Eval mode (the running statistics): the fused kernel against nn.BatchNorm2d and float64, values and the
    gradients of x, gamma and beta."""
    c = shape[1]
    x, dy, stats = _bn_inputs(4, shape)
    cells = [FusedBatchNorm2d(c, eps=1e-3), nn.BatchNorm2d(c, eps=1e-3)]
    for cell in cells:
        _set_bn(cell, stats, False)
    assert cells[0].fused
    gamma, beta, mean, var = (v.astype(np.float64).reshape(1, c, 1, 1) for v in stats)
    r = 1.0 / np.sqrt(var + 1e-3)
    ref = (x - mean) * r * gamma + beta
    refs = [dy * r * gamma, (dy * (x - mean) * r).sum((0, 2, 3)), dy.sum((0, 2, 3))]
    (y, grads), (y_std, grads_std) = value_and_grads(cells[0], x, dy), value_and_grads(cells[1], x, dy)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5 * np.abs(ref).max())
    _assert_fused_standard_float64(grads, grads_std, refs)
    with build_target("Ascend"):
        assert type(batch_norm2d(4)) is nn.BatchNorm2d
    with build_target("CPU", cpu_backend=False):
        assert type(batch_norm2d(4)) is nn.BatchNorm2d
    with build_target("CPU"):
        assert isinstance(batch_norm2d(4), FusedBatchNorm2d)


@pytest.mark.parametrize("shape,momentum", [((2, 6, 5, 7), 0.9), ((3, 4, 16, 16), 0.8)])
def test_fused_batch_norm_training_matches_batch_norm_gradients_and_running_update(ms_mode, shape, momentum):
    """Training mode (the batch statistics): values, the gradients of x, gamma and beta, and the running
    statistics after two steps (the value and the gradient call) against nn.BatchNorm2d and float64 (biased
    variance to normalise, unbiased for the running value, ``momentum`` the weight of the old value)."""
    c = shape[1]
    x, dy, stats = _bn_inputs(5, shape)
    cells = [FusedBatchNorm2d(c, eps=1e-3, momentum=momentum), nn.BatchNorm2d(c, eps=1e-3, momentum=momentum)]
    for cell in cells:
        _set_bn(cell, stats, True)
    assert cells[0].fused
    cells[0].bn_train = None  # the fused form never reaches MindSpore's training BatchNorm
    x64 = x.astype(np.float64)
    gamma, beta = (v.astype(np.float64).reshape(1, c, 1, 1) for v in stats[:2])
    axes = (0, 2, 3)
    mean, var = x64.mean(axes, keepdims=True), x64.var(axes, keepdims=True)
    r = 1.0 / np.sqrt(var + 1e-3)
    xhat = (x64 - mean) * r
    gx = dy * gamma
    refs = [r * (gx - gx.mean(axes, keepdims=True) - xhat * (gx * xhat).mean(axes, keepdims=True)),
            (dy * xhat).sum(axes), dy.sum(axes)]
    ref = xhat * gamma + beta
    (y, grads), (y_std, grads_std) = value_and_grads(cells[0], x, dy), value_and_grads(cells[1], x, dy)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5 * np.abs(ref).max())
    _assert_fused_standard_float64(grads, grads_std, refs)
    count = x.size // c
    run_mean, run_var = stats[2].astype(np.float64), stats[3].astype(np.float64)
    for _ in range(2):
        run_mean = momentum * run_mean + (1 - momentum) * mean.ravel()
        run_var = momentum * run_var + (1 - momentum) * var.ravel() * count / (count - 1)
    for got, std, want in ((cells[0].moving_mean, cells[1].moving_mean, run_mean),
                           (cells[0].moving_variance, cells[1].moving_variance, run_var)):
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.asnumpy(), std.asnumpy(), rtol=1e-5, atol=1e-6)


class _BnLoss(nn.Cell):
    def __init__(self, cell, residual):
        super().__init__()
        self.cell, self.residual = cell, residual

    def construct(self, x, res, dy):
        y = self.cell(x, res) if self.residual else self.cell(x)
        return (y * dy).sum()


@pytest.mark.parametrize("act", ["relu", "add_relu"])
@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_with_activation_matches_float64_and_the_standard_form(ms_mode, act, training):
    """BatchNorm + ReLU and ReLU(BatchNorm + residual) (a ResNet block's ends) in one kernel: values and the
    gradients of x, the residual, gamma and beta against float64 and against the same cell's standard form
    (MindSpore's BatchNorm, Add, ReLU), in evaluation and training mode."""
    shape, c = (3, 5, 9, 7), 5
    x, dy, stats = _bn_inputs(6, shape)
    res = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    residual = act == "add_relu"
    outs = []
    for fused in (True, False):  # the factory's cell with and without the CPU backend
        with build_target("CPU", cpu_backend=fused):
            cell = batch_norm2d(c, eps=1e-3, act=act)
        assert isinstance(cell, FusedBatchNorm2d if fused else BatchNormAct2d) and cell.act == act
        assert getattr(cell, "fused", False) == fused
        _set_bn(cell, stats, training)
        if fused:
            cell.bn_train = cell.bn_infer = None  # the fused form never reaches MindSpore's BatchNorm
        y = (cell(ms.Tensor(x), ms.Tensor(res)) if residual else cell(ms.Tensor(x))).asnumpy()
        grads = ms.grad(_BnLoss(cell, residual), grad_position=(0, 1), weights=cell.trainable_params())(
            ms.Tensor(x), ms.Tensor(res), ms.Tensor(dy))
        outs.append([y] + [g.asnumpy() for g in grads[0]] + [g.asnumpy() for g in grads[1]])
    axes = (0, 2, 3)
    gamma, beta, mean, var = (v.astype(np.float64).reshape(1, c, 1, 1) for v in stats)
    if training:
        mean, var = x.astype(np.float64).mean(axes, keepdims=True), x.astype(np.float64).var(axes, keepdims=True)
    r = 1.0 / np.sqrt(var + 1e-3)
    xhat = (x - mean) * r
    pre = xhat * gamma + beta + (res if residual else 0.0)
    ref = np.maximum(pre, 0.0)
    g = dy * (pre > 0)
    gx = g * gamma
    dx = r * (gx - gx.mean(axes, keepdims=True) - xhat * (gx * xhat).mean(axes, keepdims=True)) if training else gx * r
    refs = [ref, dx, g if residual else np.zeros_like(res), (g * xhat).sum(axes), g.sum(axes)]
    _assert_fused_standard_float64(outs[0], outs[1], refs)


def test_batch_norm_with_activation_is_not_folded_into_a_conv():
    """A BatchNorm followed by its ReLU cannot become a convolution's scale and bias: a clear error, not a
    network silently without the ReLU."""
    from convattn.layers.reparam import fuse_conv_bn

    with build_target("CPU"):
        fused = batch_norm2d(4, act="relu")
    assert isinstance(fused, FusedBatchNorm2d)
    with pytest.raises(ValueError, match="act='relu'"):
        fuse_conv_bn(nn.Conv2d(3, 4, 3), fused)
    assert isinstance(fuse_conv_bn(nn.Conv2d(3, 4, 3), batch_norm2d(4)), nn.Conv2d)
    with build_target("Ascend"):  # elsewhere the standard form (BatchNorm, ReLU): same cell type and parameters
        cell = batch_norm2d(4, act="add_relu")
    assert isinstance(cell, nn.BatchNorm2d) and type(cell) is BatchNormAct2d and cell.act == "add_relu"
    assert not getattr(cell, "fused", False)
    assert sorted(p.name for p in cell.get_parameters()) == sorted(p.name for p in fused.get_parameters())
    with pytest.raises(ValueError, match="act='add_relu'"):
        fuse_conv_bn(nn.Conv2d(3, 4, 3), cell)
