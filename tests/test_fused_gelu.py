"""The fused exact-GELU CPU kernel: same values and gradient as MindSpore's erf GELU, chosen only for the CPU
target, switched off for export."""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

import convattn
from convattn.layers import GELU, set_fused_kernels
from convattn.layers.fused_gelu import FusedGELU
from convattn.layers.fused_window import fused_kernels_available
from convattn.layers.targets import build_target
from convattn.models import small_instance_kwargs

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="fused CPU kernels unavailable (no g++)")


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
    with build_target("Ascend"):
        asc = GELU()
    assert isinstance(cpu, FusedGELU) and cpu.fused and cpu.approximate == "none"
    assert type(asc) is nn.GELU and asc.approximate == "none"


def test_models_use_it_and_export_switches_it_off():
    net = convattn.create_model("swin_tiny", num_classes=10, target="CPU", **small_instance_kwargs("swin_tiny")[0])
    gelus = [c for _, c in net.cells_and_names() if isinstance(c, nn.GELU)]
    assert gelus and all(isinstance(c, FusedGELU) and c.fused for c in gelus)
    assert len(set_fused_kernels(net, False)) >= len(gelus) and not any(c.fused for c in gelus)
    net = convattn.create_model("van_b0", num_classes=10, target="CPU", **small_instance_kwargs("van_b0")[0])
    from convattn.deploy import prepare_for_export
    from convattn.deploy.gelu import ExportSafeGELU

    prepare_for_export(net, onnx_safe=True)
    kinds = {type(c) for _, c in net.cells_and_names()}
    assert ExportSafeGELU in kinds and FusedGELU not in kinds
