"""ACmix's fused data movement on the CPU backend: ``FusedAcmixMix`` (concat q, k, v over the heads, ``fc``, the
transpose to ``dep_conv``'s channel order, in one kernel) and ``FusedSubsample2`` (the stride-2 queries) equal the
standard formulation, values and gradients; an ACmix layer built for CPU uses them and its outputs and gradients
equal the standard form's."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

from convattn.cpu.acmix import FusedAcmixMix, FusedGroupConv2d, FusedSubsample2
from convattn.cpu.runtime import runtime
from convattn.layers.acmix import ACmix
from convattn.layers.helpers import subsample2d
from convattn.layers.targets import build_target
from cell_grads import value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


class _StdMix(nn.Cell):
    """The standard formulation: concat over the heads, 1x1 conv, transpose (ACmix's conv path input)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def construct(self, q, k, v, w, b):
        n, c, h, wd = q.shape
        hd, kk = c // self.head, w.shape[0]
        f_all = ops.concat((q.reshape(n, self.head, hd, h * wd), k.reshape(n, self.head, hd, h * wd),
                            v.reshape(n, self.head, hd, h * wd)), 1)
        f = ops.conv2d(f_all, w) + b.reshape(1, kk, 1, 1)
        return ops.transpose(f, (0, 2, 1, 3)).reshape(n, hd * kk, h, wd)


class _Loss(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, q, k, v, w, b, dy):
        return (self.cell(q, k, v, w, b) * dy).sum()


def _values_and_grads(cell, args, dy):
    t = [ms.Tensor(a) for a in args]
    y = cell(*t).asnumpy()
    grads = ms.grad(_Loss(cell), grad_position=(0, 1, 2, 3, 4))(*t, ms.Tensor(dy))
    return y, [g.asnumpy() for g in grads]


@pytest.mark.parametrize("head,hd,h,w", [(4, 3, 5, 7), (2, 8, 9, 4)])
def test_fused_mix_equals_concat_conv_transpose(ms_mode, head, hd, h, w):
    rng = np.random.default_rng(0)
    c, kk = head * hd, 9
    args = [rng.standard_normal((2, c, h, w)).astype(np.float32) for _ in range(3)]
    args += [rng.standard_normal((kk, 3 * head, 1, 1)).astype(np.float32), rng.standard_normal(kk).astype(np.float32)]
    dy = rng.standard_normal((2, hd * kk, h, w)).astype(np.float32)
    (y, g), (y_std, g_std) = _values_and_grads(FusedAcmixMix(), args, dy), _values_and_grads(_StdMix(head), args, dy)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5)
    for a, b in zip(g, g_std):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(b).max()))


class _Sub(nn.Cell):
    def construct(self, x):
        return subsample2d(x, 2)


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 8, 8)])
def test_fused_subsample_equals_subsample2d(ms_mode, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal((shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2)).astype(np.float32)
    (y, (dx,)), (y_std, (dx_std,)) = value_and_grads(FusedSubsample2(), x, dy), value_and_grads(_Sub(), x, dy)
    assert np.array_equal(y, y_std) and np.array_equal(dx, dx_std)


@pytest.mark.parametrize("cin,cout,group,k,hw", [(36, 16, 4, 3, (7, 10)), (18, 8, 2, 5, (9, 9)), (27, 12, 3, 3, (16, 5))])
def test_fused_group_conv_equals_grouped_conv2d(ms_mode, cin, cout, group, k, hw):
    rng = np.random.default_rng(3)
    fused = FusedGroupConv2d(cin, cout, k, group)
    plain = nn.Conv2d(cin, cout, k, pad_mode="pad", padding=k // 2, group=group, has_bias=False)
    plain.weight.set_data(fused.weight.data)
    x = rng.standard_normal((2, cin) + hw).astype(np.float32)
    dy = rng.standard_normal((2, cout) + hw).astype(np.float32)
    (y, g), (y_std, g_std) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5)
    for a, b in zip(g, g_std):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("stride", [1, 2])
def test_acmix_layer_on_the_backend_equals_the_standard_form(ms_mode, stride):
    with build_target("CPU"):
        fused = ACmix(16, 16, kernel_att=7, head=4, stride=stride)
    with build_target("CPU", cpu_backend=False):
        std = ACmix(16, 16, kernel_att=7, head=4, stride=stride)
    assert isinstance(fused.mix, FusedAcmixMix) and std.mix is None
    assert isinstance(fused.subsample, FusedSubsample2) == (stride == 2)
    assert isinstance(fused.dep_conv, FusedGroupConv2d) == (stride == 1) and type(std.dep_conv) is nn.Conv2d
    ms.load_param_into_net(std, {p.name: p for p in fused.get_parameters()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    dy = rng.standard_normal(tuple(std(ms.Tensor(x)).shape)).astype(np.float32)
    (y, g), (y_std, g_std) = value_and_grads(fused, x, dy), value_and_grads(std, x, dy)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-5)
    for a, b in zip(g, g_std):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(b).max()))
