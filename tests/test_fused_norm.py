"""The fused CPU LayerNorm (last axis and NCHW channels) and Dense bias kernels: the same values and gradients as
MindSpore's LayerNorm and Dense, chosen only for the CPU target, switched off for export."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.layers import ChannelLayerNorm, FusedLayerNorm, Linear, dense, layer_norm, set_fused_kernels
from convattn.layers.fused_window import fused_kernels_available
from convattn.layers.gemm import gemm_isa, gemm_unavailable_reason
from convattn.layers.targets import build_target
from convattn.models import small_instance_kwargs
from cell_grads import value_and_grads

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="fused CPU kernels unavailable (no g++)")


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
    for fused in (True, False):
        cell = FusedLayerNorm(c, eps, fused=fused) if kind == "last" else ChannelLayerNorm(c, eps, fused=fused)
        cell.gamma.set_data(ms.Tensor(gamma))
        cell.beta.set_data(ms.Tensor(beta))
        cells.append(cell)
    assert cells[0].fused and not cells[1].fused
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
    fused, plain = Linear(shape[-1], 40, has_bias=bias), nn.Dense(shape[-1], 40, has_bias=bias)
    assert fused.fused
    if gemm:
        assert fused.gemm_op is not None
    else:
        fused.gemm_op = None
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
        cpu = (layer_norm(8), dense(8, 4), dense(8, 4, has_bias=False), ChannelLayerNorm(8))
    with build_target("Ascend"):
        asc = (layer_norm(8), dense(8, 4), ChannelLayerNorm(8))
    assert isinstance(cpu[0], FusedLayerNorm) and cpu[0].fused and cpu[0].epsilon == 1e-5
    assert isinstance(cpu[1], Linear) and cpu[1].fused
    if gemm_unavailable_reason() is None:  # without a bias only the GEMM form is faster than nn.Dense
        assert isinstance(cpu[2], Linear) and cpu[2].fused and cpu[2].bias is None
    else:
        assert type(cpu[2]) is nn.Dense
    assert cpu[3].fused
    assert type(asc[0]) is nn.LayerNorm and type(asc[1]) is nn.Dense
    net = nn.SequentialCell([asc[2]])
    set_fused_kernels(net, True)  # a network built for Ascend keeps the standard form
    assert not asc[2].fused


def test_models_use_them_and_export_switches_them_off(pynative):
    small, size = small_instance_kwargs("swin_tiny")
    net = convattn.create_model("swin_tiny", num_classes=10, target="CPU", **small)
    norms = [c for _, c in net.cells_and_names() if isinstance(c, nn.LayerNorm)]
    linears = [c for n, c in net.cells_and_names() if isinstance(c, nn.Dense) and n.endswith(("fc1", "fc2", "qkv", "proj"))]
    assert norms and all(isinstance(c, FusedLayerNorm) and c.fused for c in norms)
    assert linears and all(isinstance(c, Linear) and c.fused for c in linears)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2,) + size).astype(np.float32))
    y_fused = net(x).asnumpy()
    switched = set_fused_kernels(net, False)
    assert len(switched) >= len(norms) + len(linears) and not any(c.fused for c in norms + linears)
    np.testing.assert_allclose(net(x).asnumpy(), y_fused, rtol=0, atol=1e-4)

    van = convattn.create_model("van_b0", num_classes=10, target="CPU", **small_instance_kwargs("van_b0")[0])
    channel_norms = [c for _, c in van.cells_and_names() if isinstance(c, ChannelLayerNorm)]
    assert channel_norms and all(c.fused for c in channel_norms)
    from convattn.deploy import prepare_for_export

    prepare_for_export(van, onnx_safe=True)
    assert not any(getattr(c, "fused", False) for _, c in van.cells_and_names())


def test_private_gemm_library_is_capped_at_avx512_where_the_cpu_has_it():
    """The Dense GEMM's oneDNN copy runs AVX-512 while MindSpore's own oneDNN stays at the AVX2 cap that its
    convolutions need (convattn._env)."""
    from convattn.layers.kernel_build import cpu_flags

    if gemm_unavailable_reason() is not None:
        pytest.skip(f"private GEMM library unavailable: {gemm_unavailable_reason()}")
    import os
    assert os.environ["CONVATTN_GEMM_LIBRARY"].endswith(".so")
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
    from convattn.layers import FusedBatchNorm2d

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
        from convattn.layers import batch_norm2d
        assert type(batch_norm2d(4)) is nn.BatchNorm2d
    with build_target("CPU"):
        assert isinstance(batch_norm2d(4), FusedBatchNorm2d)


@pytest.mark.parametrize("shape,momentum", [((2, 6, 5, 7), 0.9), ((3, 4, 16, 16), 0.8)])
def test_fused_batch_norm_training_matches_batch_norm_gradients_and_running_update(ms_mode, shape, momentum):
    """Training mode (the batch statistics): values, the gradients of x, gamma and beta, and the running
    statistics after two steps (the value and the gradient call) against nn.BatchNorm2d and float64 (biased
    variance to normalise, unbiased for the running value, ``momentum`` the weight of the old value)."""
    from convattn.layers import FusedBatchNorm2d

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
    from convattn.layers import FusedBatchNorm2d

    shape, c = (3, 5, 9, 7), 5
    x, dy, stats = _bn_inputs(6, shape)
    res = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    residual = act == "add_relu"
    outs = []
    for fused in (True, False):
        cell = FusedBatchNorm2d(c, eps=1e-3, act=act, fused=fused)
        assert cell.fused == fused
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
    from convattn.layers import batch_norm2d
    from convattn.layers.reparam import fuse_conv_bn

    with pytest.raises(ValueError, match="act='relu'"):
        fuse_conv_bn(nn.Conv2d(3, 4, 3), batch_norm2d(4, act="relu"))
    assert isinstance(fuse_conv_bn(nn.Conv2d(3, 4, 3), batch_norm2d(4)), nn.Conv2d)
    with build_target("Ascend"):  # elsewhere the standard form (BatchNorm, ReLU): same cell type and parameters
        cell = batch_norm2d(4, act="add_relu")
        assert isinstance(cell, nn.BatchNorm2d) and not cell.fused and cell.act == "add_relu"
