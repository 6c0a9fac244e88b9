"""The fused CPU convolution (``GemmConv2d``: im2col + the private GEMM): the values and gradients of MindSpore's
``nn.Conv2d`` and of a float64 reference for every padding mode, strides, dilation, 1x1 and with / without bias;
built only for the CPU target with the CPU backend; the models use it and their standard and export forms do not."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.conv import GemmConv2d, conv_padding
from convattn.cpu.runtime import runtime
from convattn.layers import conv2d
from convattn.layers.targets import build_target
from cell_grads import assert_model_runs_fused, value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available or not runtime().gemm,
                                reason="CPU backend or its private GEMM library unavailable")


def _conv64(x, w, b, stride, pads, dilation, out_hw):
    """float64 convolution (explicit top/left pads, output size given) and its vjp for ``sum(y * dy)``."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (top, left), (dh, dw), (ho, wo) = stride, pads, dilation, out_hw
    rows = np.arange(ho)[:, None] * sh - top + np.arange(kh)[None, :] * dh  # (ho, kh)
    cols = np.arange(wo)[:, None] * sw - left + np.arange(kw)[None, :] * dw  # (wo, kw)
    valid = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < wd))[None, :, None, :]
    patches = x[:, :, rows.clip(0, h - 1)[:, None, :, None], cols.clip(0, wd - 1)[None, :, None, :]] * valid
    y = np.einsum("ncpqij,ocij->nopq", patches, w) + (0 if b is None else b.astype(np.float64)[None, :, None, None])

    def vjp(dy):
        dy = dy.astype(np.float64)
        dw_ = np.einsum("nopq,ncpqij->ocij", dy, patches)
        dpatch = np.einsum("nopq,ocij->ncpqij", dy, w) * valid
        dx = np.zeros_like(x)
        r = np.broadcast_to(rows.clip(0, h - 1)[:, None, :, None], valid.shape)
        q = np.broadcast_to(cols.clip(0, wd - 1)[None, :, None, :], valid.shape)
        for i in range(n):
            for ch in range(c):
                np.add.at(dx[i, ch], (r, q), dpatch[i, ch])
        return [dx, dw_] + ([] if b is None else [dy.sum((0, 2, 3))])

    return y, vjp


# (N, C, H, W, O, k, stride, pad_mode, padding, dilation, bias): ResNet's 3x3 / 1x1 / strided 1x1 / 7x7 stem, VAN's
# overlapping patch embedding, "same" with stride and dilation, PVT's non-overlapping reduction, uneven padding
CASES = [(2, 5, 9, 11, 7, 3, 1, "pad", 1, 1, False), (2, 5, 9, 11, 7, 3, 2, "pad", 1, 1, True),
         (2, 6, 10, 10, 4, 1, 1, "valid", 0, 1, True), (3, 6, 10, 10, 4, 1, 2, "valid", 0, 1, False),
         (1, 3, 17, 15, 8, 7, 2, "pad", 3, 1, False), (2, 4, 12, 12, 6, 3, 2, "same", 0, 1, True),
         (2, 4, 13, 11, 6, 3, 1, "same", 0, 2, False), (2, 4, 16, 16, 6, 4, 4, "valid", 0, 1, True),
         (2, 4, 8, 8, 6, 3, 1, "pad", (1, 0, 2, 1), 1, True)]


@pytest.mark.parametrize("n,c,h,w,o,k,stride,pad_mode,padding,dilation,bias", CASES)
def test_gemm_conv_matches_conv2d_and_its_gradients(ms_mode, n, c, h, w, o, k, stride, pad_mode, padding, dilation,
                                                    bias):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    fused = GemmConv2d(c, o, k, stride=stride, pad_mode=pad_mode, padding=padding, dilation=dilation, has_bias=bias)
    plain = nn.Conv2d(c, o, k, stride=stride, pad_mode=pad_mode, padding=padding, dilation=dilation, has_bias=bias)
    assert fused.fused
    fused.weight.set_data(ms.Tensor(rng.standard_normal(fused.weight.shape).astype(np.float32)))
    plain.weight.set_data(fused.weight.data.copy())
    b = None
    if bias:
        b = rng.standard_normal(o).astype(np.float32)
        fused.bias.set_data(ms.Tensor(b))
        plain.bias.set_data(ms.Tensor(b))
    top, left, ho, wo = conv_padding(pad_mode, padding, k, stride, dilation, (h, w))
    ref, vjp = _conv64(x, fused.weight.asnumpy(), b, (stride, stride), (top, left), (dilation, dilation), (ho, wo))
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    (y, grads), (y_std, grads_std) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    assert y.shape == y_std.shape == ref.shape
    tol = 2e-6 * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=tol)
    refs = vjp(dy)
    assert len(grads) == len(refs)
    for got, std, want in zip(grads, grads_std, refs):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(got, std, rtol=0, atol=1e-5 * scale)


def test_conv_factory_follows_the_build_target():
    with build_target("CPU"):
        cpu = (conv2d(4, 8, 3, pad_mode="pad", padding=1), conv2d(4, 8, 3, group=2))
    with build_target("CPU", cpu_backend=False):
        std = conv2d(4, 8, 3, pad_mode="pad", padding=1)
    with build_target("Ascend"):
        asc = conv2d(4, 8, 3, pad_mode="pad", padding=1)
    assert isinstance(cpu[0], GemmConv2d) and cpu[0].fused
    assert type(cpu[1]) is nn.Conv2d  # grouped: MindSpore's own
    assert type(std) is nn.Conv2d and type(asc) is nn.Conv2d


@pytest.mark.parametrize("name", ["resnet26", "van_b0", "pvt_tiny"])
def test_models_convolve_through_the_kernel_and_their_standard_form_does_not(pynative, name):
    assert_model_runs_fused(name, GemmConv2d)


def test_folding_batch_norm_keeps_the_gemm_form():
    from convattn.layers.reparam import fuse_conv_bn

    rng = np.random.default_rng(3)
    conv, bn = GemmConv2d(4, 6, 3, pad_mode="pad", padding=1), nn.BatchNorm2d(6)
    for p in (bn.gamma, bn.beta, bn.moving_mean):
        p.set_data(ms.Tensor(rng.standard_normal(6).astype(np.float32)))
    bn.moving_variance.set_data(ms.Tensor(rng.uniform(0.5, 2.0, 6).astype(np.float32)))
    x = ms.Tensor(rng.standard_normal((2, 4, 7, 7)).astype(np.float32))
    net = nn.SequentialCell([conv, bn])
    net.set_train(False)
    ref = net(x).asnumpy()
    fused = fuse_conv_bn(conv, bn)
    assert isinstance(fused, GemmConv2d) and fused.fused
    np.testing.assert_allclose(fused(x).asnumpy(), ref, rtol=0, atol=1e-5)
