"""The lean-backward formulations of the standard form (convattn.layers.lean_grad): the same values and
gradients as the MindSpore operators they replace, in PYNATIVE and GRAPH mode."""
import numpy as np
import mindspore as ms
from mindspore import nn

from convattn.layers.lean_grad import LeanGELU


class _Weighted(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, dy):
        return (self.cell(x) * dy).sum()


def test_lean_gelu_equals_the_exact_gelu(ms_mode):
    rs = np.random.RandomState(0)
    x = ms.Tensor((rs.randn(4, 33, 17) * 3).astype(np.float32))
    dy = ms.Tensor(rs.randn(4, 33, 17).astype(np.float32))
    lean, plain = LeanGELU(), nn.GELU(approximate=False)
    np.testing.assert_allclose(lean(x).asnumpy(), plain(x).asnumpy(), rtol=0, atol=1e-6)
    g_lean = ms.grad(_Weighted(lean))(x, dy).asnumpy()
    g_plain = ms.grad(_Weighted(plain))(x, dy).asnumpy()
    np.testing.assert_allclose(g_lean, g_plain, rtol=0, atol=1e-5)


def test_lean_gelu_is_an_exact_nn_gelu():
    cell = LeanGELU()
    assert isinstance(cell, nn.GELU) and cell.approximate == "none"
