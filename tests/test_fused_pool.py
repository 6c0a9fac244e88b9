"""The fused CPU max pooling (``FusedMaxPool2d``, the ResNet stem): MindSpore's padded ``nn.MaxPool2d`` values and
gradients; built only for the CPU target; export still swaps it for the export-safe pool."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.deploy import ExportSafeMaxPool2d, prepare_for_export
from convattn.layers import FusedMaxPool2d, max_pool2d
from convattn.layers.fused_window import fused_kernels_available
from convattn.layers.targets import build_target
from cell_grads import value_and_grads

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="fused CPU kernels unavailable (no g++)")


# odd / even sizes, the stem's 3x3 stride 2 pad 1, an unpadded 2x2 pool, a stride-1 pool; all-negative maps (a
# zero pad would win) with +-inf entries
@pytest.mark.parametrize("shape,k,s,p", [((2, 3, 9, 8), 3, 2, 1), ((1, 2, 7, 11), 3, 2, 1), ((2, 2, 6, 6), 2, 2, 0),
                                         ((1, 3, 10, 10), 3, 1, 1)])
def test_fused_max_pool_matches_max_pool_and_its_gradient(ms_mode, shape, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32) - 4.0
    x[0, 0, 0, 1], x[0, -1, -1, -1] = -np.inf, np.inf
    fused, plain = FusedMaxPool2d(k, s, p), nn.MaxPool2d(k, s, pad_mode="pad", padding=p)
    assert fused.fused
    dy = rng.standard_normal(plain(ms.Tensor(x)).shape).astype(np.float32)
    (y, (dx,)), (y_std, (dx_std,)) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    assert np.array_equal(y, y_std) and np.array_equal(dx, dx_std)


def test_max_pool_factory_and_export():
    with build_target("CPU"):
        cpu = max_pool2d(3, 2, 1)
    with build_target("Ascend"):
        asc = max_pool2d(3, 2, 1)
    assert isinstance(cpu, FusedMaxPool2d) and cpu.fused and type(asc) is nn.MaxPool2d
    net = convattn.create_model("resnet26", num_classes=10, target="CPU", layers=(1, 1, 1, 1))
    assert isinstance(net.maxpool, FusedMaxPool2d) and net.maxpool.fused
    prepare_for_export(net, onnx_safe=True)
    assert isinstance(net.maxpool, ExportSafeMaxPool2d)
