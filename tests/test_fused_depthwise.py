"""The fused CPU depth-wise convolution (VAN's LKA and MLP): the same values and gradients as MindSpore's grouped
Conv2D, chosen only for the CPU target, switched off for export."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.layers import DepthwiseConv2d, depthwise_conv, set_fused_kernels
from convattn.layers.fused_window import fused_kernels_available
from convattn.layers.targets import build_target
from convattn.models import small_instance_kwargs
from cell_grads import value_and_grads

pytestmark = pytest.mark.skipif(not fused_kernels_available(), reason="fused CPU kernels unavailable (no g++)")


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
    with build_target("Ascend"):
        asc = depthwise_conv(8, 7, 3)
    assert isinstance(cpu, DepthwiseConv2d) and cpu.fused
    assert type(asc) is nn.Conv2d and asc.group == 8 and asc.padding == 9 and asc.dilation == (3, 3)
    with pytest.raises(ValueError, match="odd kernel_size"):
        DepthwiseConv2d(8, 4)


def test_van_uses_it_and_export_switches_it_off(pynative):
    small, size = small_instance_kwargs("van_b0")
    net = convattn.create_model("van_b0", num_classes=10, target="CPU", **small)
    convs = [c for _, c in net.cells_and_names() if isinstance(c, nn.Conv2d) and c.group > 1]
    assert convs and all(isinstance(c, DepthwiseConv2d) and c.fused for c in convs)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(3).standard_normal((2,) + size).astype(np.float32))
    y_fused = net(x).asnumpy()
    set_fused_kernels(net, False)
    np.testing.assert_allclose(net(x).asnumpy(), y_fused, rtol=0, atol=1e-4)
    from convattn.deploy import prepare_for_export

    set_fused_kernels(net, True)
    prepare_for_export(net, onnx_safe=True)
    assert not any(c.fused for c in convs)
