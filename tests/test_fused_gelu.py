"""The fused exact-GELU CPU kernel: same values and gradient as MindSpore's erf GELU, built only for the CPU
target with the CPU backend, never in the standard or export form."""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

from convattn.cpu.gelu import FusedGELU
from convattn.cpu.runtime import runtime
from convattn.layers import GELU, ExportSafeGELU
from convattn.layers.lean_grad import LeanGELU
from convattn.layers.targets import build_target
from cell_grads import assert_same_outputs, build_small, cpu_backend_cells, standard_twin

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


def _reference(x):
    erf = np.vectorize(math.erf)(x / math.sqrt(2.0))
    cdf = 0.5 * (1.0 + erf)
    return x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def test_fused_gelu_matches_exact_gelu_and_its_gradient(ms_mode):
    rng = np.random.default_rng(0)
    # both tails (erfc form: no cancellation for large negative x), zero, and an odd element count
    x = np.concatenate([rng.standard_normal(3001) * 3.0, [-12.0, -6.0, -0.0, 0.0, 6.0, 12.0]]).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y_ref, slope_ref = _reference(x.astype(np.float64))
    fused, plain = FusedGELU(), nn.GELU(approximate=False)
    assert fused.fused
    grad = ops.GradOperation(sens_param=True)
    xt, dyt = ms.Tensor(x.reshape(31, 97)), ms.Tensor(dy.reshape(31, 97))
    y = fused(xt).asnumpy().ravel()
    g = grad(fused)(xt, dyt).asnumpy().ravel()
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(g, dy * slope_ref, rtol=0, atol=3e-6)
    np.testing.assert_allclose(y, plain(xt).asnumpy().ravel(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(g, grad(plain)(xt, dyt).asnumpy().ravel(), rtol=0, atol=3e-6)
    assert y[-4] == 0.0 and y[-3] == 0.0 and np.isfinite(g).all()


def test_gelu_factory_follows_the_build_target():
    with build_target("CPU"):
        cpu = GELU()
    with build_target("CPU", cpu_backend=False):
        std = GELU()
    with build_target("CPU", export_safe=True):
        safe = GELU()
    with build_target("Ascend"):
        asc = GELU()
    assert isinstance(cpu, FusedGELU) and cpu.fused and cpu.approximate == "none"
    for cell in (std, asc):  # the standard cell, with the lean backward (convattn.layers.lean_grad)
        assert type(cell) is LeanGELU and isinstance(cell, nn.GELU) and cell.approximate == "none"
    assert type(safe) is ExportSafeGELU


def test_models_use_it_and_their_standard_and_export_forms_do_not(pynative):
    net = build_small("swin_tiny", target="CPU")
    gelus = [n for n, c in net.cells_and_names() if isinstance(c, nn.GELU)]
    assert gelus and all(isinstance(c, FusedGELU) and c.fused for n, c in net.cells_and_names() if n in gelus)
    twin = standard_twin(net, "swin_tiny")  # the standard form (cpu_backend=False), same weights
    twin_cells = dict(twin.cells_and_names())
    assert cpu_backend_cells(twin) == [] and all(type(twin_cells[n]) is LeanGELU for n in gelus)
    assert_same_outputs(net, twin, "swin_tiny", seed=1)

    van = build_small("van_b0", target="CPU", export_safe=True)  # the form export builds for ONNX
    kinds = {type(c) for _, c in van.cells_and_names()}
    assert ExportSafeGELU in kinds and FusedGELU not in kinds and nn.GELU not in kinds and LeanGELU not in kinds
    assert cpu_backend_cells(van) == []
