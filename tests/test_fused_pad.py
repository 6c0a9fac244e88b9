"""The fused CPU reflection padding (``FusedReflectionPad2d``, and ``FusedReflectPadSub``, which pads ``x - s``
in the same pass): ``nn.ReflectionPad2d``'s values and gradients; built by the ``reflection_pad2d`` factory only
for the CPU target with the CPU backend (the window gathers and ACmix's fused attention read it)."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.pad import FusedReflectionPad2d, FusedReflectPadSub
from convattn.cpu.runtime import runtime
from convattn.layers.pad import reflection_pad2d
from convattn.layers.targets import build_target
from cell_grads import build_small, value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


class _Loss(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, s, dy):
        return (self.cell(x, s) * dy).sum()


def _two_input_grads(cell, x, s, dy):
    y = cell(ms.Tensor(x), ms.Tensor(s)).asnumpy()
    gx, gs = ms.grad(_Loss(cell), grad_position=(0, 1))(ms.Tensor(x), ms.Tensor(s), ms.Tensor(dy))
    return y, (gx.asnumpy(), gs.asnumpy())


class _PadSub(nn.Cell):
    """reflect_pad(x - s) as the standard cells compute it."""

    def __init__(self, p):
        super().__init__()
        self.pad = nn.ReflectionPad2d((p,) * 4)

    def construct(self, x, s):
        return self.pad(x - s)


@pytest.mark.parametrize("shape,p", [((2, 3, 7, 9), 1), ((1, 2, 8, 8), 3), ((3, 1, 5, 12), 4)])
def test_fused_reflection_pad_matches_and_its_gradient(ms_mode, shape, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    fused, plain = FusedReflectionPad2d(p), nn.ReflectionPad2d((p,) * 4)
    dy = rng.standard_normal(plain(ms.Tensor(x)).shape).astype(np.float32)
    (y, (dx,)), (y_std, (dx_std,)) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    assert np.array_equal(y, y_std)
    np.testing.assert_allclose(dx, dx_std, rtol=0, atol=1e-6)  # the same sums, another order


@pytest.mark.parametrize("batch_of_s", [1, 2])
def test_fused_reflect_pad_sub_matches_and_its_gradients(ms_mode, batch_of_s):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    s = rng.standard_normal((batch_of_s, 4, 6, 7)).astype(np.float32)
    fused, plain = FusedReflectPadSub(3), _PadSub(3)
    dy = rng.standard_normal((2, 4, 12, 13)).astype(np.float32)
    (y, grads), (y_std, grads_std) = _two_input_grads(fused, x, s, dy), _two_input_grads(plain, x, s, dy)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=1e-6)
    for g, g_std in zip(grads, grads_std):
        np.testing.assert_allclose(g, g_std, rtol=0, atol=1e-5)


def test_reflection_pad_factory_and_the_networks_that_use_it():
    with build_target("CPU"):
        cpu = reflection_pad2d(3)
    with build_target("CPU", cpu_backend=False):
        std = reflection_pad2d(3)
    with build_target("Ascend"):
        asc = reflection_pad2d(3)
    assert isinstance(cpu, FusedReflectionPad2d) and type(std) is nn.ReflectionPad2d and type(asc) is nn.ReflectionPad2d
    assert type(reflection_pad2d(0)) is nn.Identity
    net = build_small("acmix_resnet26", target="CPU")
    pads = [c for _, c in net.cells_and_names() if isinstance(c, (FusedReflectionPad2d, FusedReflectPadSub))]
    assert pads and not [c for _, c in net.cells_and_names() if isinstance(c, nn.ReflectionPad2d)]
