"""The fused CPU max pooling (``FusedMaxPool2d``, the ResNet stem): MindSpore's padded ``nn.MaxPool2d`` values and
gradients; built only for the CPU target with the CPU backend; the export form has the export-safe pool."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.pool import FusedMaxPool2d
from convattn.cpu.runtime import runtime
from convattn.deploy import ExportSafeMaxPool2d as DeployExportSafeMaxPool2d
from convattn.layers import ExportSafeMaxPool2d, max_pool2d
from convattn.layers.targets import build_target
from cell_grads import build_small, cpu_backend_cells, value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


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
    with build_target("CPU", cpu_backend=False):
        std = max_pool2d(3, 2, 1)
    with build_target("CPU", export_safe=True):
        safe = max_pool2d(3, 2, 1)
    with build_target("Ascend"):
        asc = max_pool2d(3, 2, 1)
    assert isinstance(cpu, FusedMaxPool2d) and cpu.fused and type(asc) is nn.MaxPool2d and type(std) is nn.MaxPool2d
    assert type(safe) is ExportSafeMaxPool2d and DeployExportSafeMaxPool2d is ExportSafeMaxPool2d  # still re-exported
    net = build_small("resnet26", target="CPU")
    assert isinstance(net.maxpool, FusedMaxPool2d) and net.maxpool.fused
    std_net = build_small("resnet26", target="CPU", cpu_backend=False)
    assert type(std_net.maxpool) is nn.MaxPool2d and cpu_backend_cells(std_net) == []
    export = build_small("resnet26", target="CPU", export_safe=True)  # the form export builds for ONNX
    assert isinstance(export.maxpool, ExportSafeMaxPool2d) and cpu_backend_cells(export) == []
