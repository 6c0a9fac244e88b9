"""The fused CPU depth-wise convolution (VAN's LKA and MLP): the same values and gradients as MindSpore's grouped
Conv2D, built only for the CPU target with the CPU backend, never in the standard or export form."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.depthwise import DepthwiseConv2d
from convattn.cpu.runtime import runtime
from convattn.layers import depthwise_conv
from convattn.layers.targets import build_target
from cell_grads import assert_same_outputs, build_small, cpu_backend_cells, standard_twin, value_and_grads

pytestmark = pytest.mark.skipif(not runtime().available, reason=f"CPU backend unavailable: {runtime().reason}")


# VAN's three geometries; 13 x 11 maps (rows not a multiple of 8) and a 7 x 7 map narrower than the dilated
# kernel's reach (padding 9)
@pytest.mark.parametrize("k,d,shape", [(3, 1, (2, 6, 13, 11)), (5, 1, (2, 4, 13, 11)), (7, 3, (2, 5, 13, 11)),
                                       (7, 3, (3, 4, 7, 7))])
def test_fused_depthwise_matches_grouped_conv_and_its_gradients(ms_mode, k, d, shape):
    rng = np.random.default_rng(k * 10 + d)
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    fused = DepthwiseConv2d(c, k, d)
    plain = nn.Conv2d(c, c, k, pad_mode="pad", padding=d * (k - 1) // 2, dilation=d, group=c, has_bias=True)
    assert fused.fused
    w = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    for cell in (fused, plain):
        cell.weight.set_data(ms.Tensor(w))
        cell.bias.set_data(ms.Tensor(b))
    (y, grads), (y_ref, grads_ref) = value_and_grads(fused, x, dy), value_and_grads(plain, x, dy)
    assert y.shape == shape
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5 * float(np.abs(y_ref).max()))
    for got, ref in zip(grads, grads_ref):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))


def test_factory_follows_the_build_target_and_rejects_even_kernels():
    with build_target("CPU"):
        cpu = depthwise_conv(8, 7, 3)
        even = depthwise_conv(8, 4)  # the kernel needs an odd size: the factory builds the standard cell
    with build_target("CPU", cpu_backend=False):
        std = depthwise_conv(8, 7, 3)
    with build_target("Ascend"):
        asc = depthwise_conv(8, 7, 3)
    assert isinstance(cpu, DepthwiseConv2d) and cpu.fused
    for cell in (std, asc):
        assert type(cell) is nn.Conv2d and cell.group == 8 and cell.padding == 9 and cell.dilation == (3, 3)
    assert type(even) is nn.Conv2d and even.group == 8
    with pytest.raises(ValueError, match="odd kernel_size"):
        DepthwiseConv2d(8, 4)


def test_van_uses_it_and_its_standard_and_export_forms_do_not(pynative):
    net = build_small("van_b0", target="CPU")
    convs = [n for n, c in net.cells_and_names() if isinstance(c, nn.Conv2d) and c.group > 1]
    cells = dict(net.cells_and_names())
    assert convs and all(isinstance(cells[n], DepthwiseConv2d) and cells[n].fused for n in convs)
    twin = standard_twin(net, "van_b0")  # built with cpu_backend=False, the same weights
    twin_cells = dict(twin.cells_and_names())
    assert cpu_backend_cells(twin) == [] and all(type(twin_cells[n]) is nn.Conv2d for n in convs)
    assert_same_outputs(net, twin, "van_b0", seed=3)
    export = build_small("van_b0", target="CPU", export_safe=True)  # the form export builds for ONNX
    assert cpu_backend_cells(export) == [] and not any(getattr(c, "fused", False) for _, c in export.cells_and_names())
