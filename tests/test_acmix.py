"""ACmix: parity with the official PyTorch module and ACmix-ResNet, the depth-wise (Ascend) form, bad input."""
import numpy as np
import pytest
import mindspore as ms

import convattn
from convattn.convert import load_official_state
from convattn.layers import ACmix, ACmixConvPath, build_target
from convattn.layers.acmix import shift_kernel
from parity import load_fixture, run_parity

MODULE_FIXTURES = [
    ("acmix_module_s1.npz", dict(in_planes=64, out_planes=64, kernel_att=7, head=4, kernel_conv=3, stride=1)),
    ("acmix_module_s2.npz", dict(in_planes=64, out_planes=64, kernel_att=7, head=4, kernel_conv=3, stride=2)),
    ("acmix_module_in32_out64_h8_katt5.npz", dict(in_planes=32, out_planes=64, kernel_att=5, head=8, kernel_conv=3)),
]


@pytest.mark.parametrize("impl", ["auto", "fast"])  # auto: the fused CPU kernels; fast: the GPU/Ascend default
@pytest.mark.parametrize("depthwise", [False, True], ids=["grouped", "depthwise"])
@pytest.mark.parametrize("name,kwargs", MODULE_FIXTURES, ids=[f[0][:-4] for f in MODULE_FIXTURES])
def test_acmix_module_matches_official(ms_mode, name, kwargs, depthwise, impl):
    got, ref, tol = run_parity(ACmix(depthwise_conv=depthwise, attn_impl=impl, **kwargs), name, rules="acmix")
    err = float(np.abs(got - ref).max())
    assert err <= tol, (f"{name} [{ms_mode}, depthwise={depthwise}, {impl}]: max|ours - official| = {err:.3g} "
                        f"> {tol:.3g}")


def test_acmix_state_layout_and_init():
    m = ACmix(64, 64)
    names = {p.name: tuple(p.shape) for p in m.get_parameters()}
    # official quirks: fc without bias, dep_conv without bias, rates of shape (1,)
    assert "fc.bias" not in names and "dep_conv.bias" not in names
    assert names["fc.weight"] == (9, 12, 1, 1) and names["dep_conv.weight"] == (64, 9, 3, 3)
    assert sum(int(np.prod(s)) for s in names.values()) == 17822  # official parameter count (fixture README)
    assert m.rate1.asnumpy().tolist() == [0.5] and m.rate2.asnumpy().tolist() == [0.5]
    np.testing.assert_array_equal(m.dep_conv.weight.asnumpy(), shift_kernel(64))
    dw = ACmix(64, 64, depthwise_conv=True)
    assert tuple(dw.dep_conv.weight.shape) == (576, 1, 3, 3) and dw.dep_conv.group == 576
    np.testing.assert_array_equal(dw.dep_conv.weight.asnumpy().reshape(64, 9, 3, 3), shift_kernel(64))


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_form_equals_grouped(stride):
    """The Ascend-legal depth-wise conv path equals the grouped one to float32 rounding, for any weights."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(stride)
    head, head_dim, out = 4, 8, 32
    grouped = ACmixConvPath(head, head_dim, out, stride=stride, fc_bias=True, depthwise_conv=False)
    dw = ACmixConvPath(head, head_dim, out, stride=stride, fc_bias=True, depthwise_conv=True)
    w = rng.standard_normal((out, 9, 3, 3)).astype(np.float32)
    grouped.dep_conv.weight.set_data(ms.Tensor(w))
    dw.dep_conv.weight.set_data(ms.Tensor(w.reshape(out * 9, 1, 3, 3)))
    for cell in (grouped, dw):
        cell.fc.weight.set_data(ms.Tensor(np.linspace(-1, 1, 9 * 3 * head, dtype=np.float32).reshape(9, 3 * head, 1, 1)))
        cell.fc.bias.set_data(ms.Tensor(np.arange(9, dtype=np.float32) / 10))
    x = ms.Tensor(rng.standard_normal((2, 3 * head, head_dim, 10 * 6)).astype(np.float32))
    a, b = grouped(x, 10, 6).asnumpy(), dw(x, 10, 6).asnumpy()
    assert a.shape == b.shape == (2, out, 10 // stride, 6 // stride)
    err = float(np.abs(a - b).max())
    assert err <= 1e-6 * max(1.0, float(np.abs(a).max())) * 10, err


def test_depthwise_chosen_by_build_target(monkeypatch):
    """The conv path follows the build target (none given: the device MindSpore is set to), never reads it itself."""
    from convattn.layers import build_target

    with build_target("Ascend"):
        assert ACmix(16, 16).depthwise_conv is True
        with pytest.raises(ValueError, match="depthwise_conv=False .* cannot run on target 'Ascend'"):
            ACmix(16, 16, depthwise_conv=False)
    with build_target("CPU"):
        assert ACmix(16, 16).depthwise_conv is False
        assert ACmix(16, 16, depthwise_conv=True).depthwise_conv is True
    monkeypatch.setattr(ms, "get_context", lambda key: "Ascend" if key == "device_target" else None)
    assert ACmix(16, 16).depthwise_conv is True  # no build target: MindSpore's device


def test_export_safe_gather_gives_same_output(ms_mode):
    """The slice-based gather (ONNX-exportable, built in an export-safe form) and the default form give the same
    ACmix output for the same weights."""
    inp, ref, state = load_fixture("acmix_module_s2.npz")
    m = ACmix(64, 64, stride=2)
    with build_target(None, export_safe=True) as form:
        safe_m = ACmix(64, 64, stride=2)
    assert form.export_safe and not form.cpu_backend
    assert safe_m.unfold.export_safe and not m.unfold.export_safe and safe_m.attention_form() == "unfold"
    outs = []
    for net in (m, safe_m):
        load_official_state(net, state, rules="acmix")
        net.set_train(False)
        outs.append(net(ms.Tensor(inp)).asnumpy())
    fast, safe = outs
    assert float(np.abs(fast - safe).max()) <= 1e-6 * max(1.0, float(np.abs(fast).max()))


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_planes=64, out_planes=60, head=8), "divisible by head"),
    (dict(in_planes=64, out_planes=64, kernel_att=6), "odd kernel_att"),
    (dict(in_planes=64, out_planes=64, dilation=2), "dilation=1"),
    (dict(in_planes=64, out_planes=64, kernel_conv=4), "kernel_conv must be odd"),
])
def test_acmix_rejects_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ACmix(**kwargs)


# ---------------------------------------------------------------- ACmix-ResNet and its ResNet baselines
# Trainable parameters at 1000 classes: ACmix values equal the official ACmix_ResNet (the README prints
# 10.6 / 14.6 / 18.6 M; see convattn.models.resnet for the gap); baselines are torchvision's Bottleneck ResNets.
RESNET_PARAMS_M = {"resnet26": 13.70, "resnet38": 19.63, "resnet50": 25.56,
                   "acmix_resnet26": 10.49, "acmix_resnet38": 14.41, "acmix_resnet50": 18.33}
ACMIX_README_M = {"acmix_resnet26": 10.6, "acmix_resnet38": 14.6, "acmix_resnet50": 18.6}


def test_acmix_resnet_matches_official(ms_mode):
    net = convattn.create_model("acmix_resnet50", num_classes=10, layers=(1, 1, 1, 1))
    got, ref, tol = run_parity(net, "acmix_resnet_l1111.npz", rules=None)  # rules from the model's default_cfg
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"acmix_resnet l1111 [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("name", sorted(RESNET_PARAMS_M))
def test_resnet_parameter_counts(name):
    net = convattn.create_model(name)
    n = sum(p.size for p in net.trainable_params()) / 1e6
    assert round(n, 2) == RESNET_PARAMS_M[name], f"{name}: {n:.4f} M"
    if name in ACMIX_README_M:  # within 2 % of the README's rounded figure
        assert abs(n - ACMIX_README_M[name]) / ACMIX_README_M[name] < 0.02


def test_acmix_resnet_official_names_and_depthwise_conversion():
    """Official keys load by name; the depth-wise (Ascend) network takes the same checkpoint via a reshape."""
    _, _, state = load_fixture("acmix_resnet_l1111.npz")
    net = convattn.create_model("acmix_resnet50", num_classes=10, layers=(1, 1, 1, 1), depthwise_conv=True)
    info = load_official_state(net, state)
    assert not info["not_loaded"]
    got = net.layer3[0].conv2.dep_conv.weight.asnumpy()
    ref = state["layer3.0.conv2.dep_conv.weight"]
    assert got.shape == (256 * 9, 1, 3, 3)
    np.testing.assert_array_equal(got.reshape(ref.shape), ref)
    assert {"conv1.weight", "bn1.moving_mean", "layer1.0.conv2.rate1", "layer1.0.downsample.0.weight",
            "fc.weight"} <= {p.name for p in net.get_parameters()}


def test_resnet_layers_override_and_features():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("acmix_resnet26", layers=(1, 1, 1, 1), features_only=True)
    assert len(net.layer2) == 1 and isinstance(net.layer2[0].conv2, ACmix)
    assert isinstance(convattn.create_model("resnet26", layers=(1, 1, 1, 1)).layer1[0].conv2, ms.nn.Conv2d)
    net.set_train(False)
    feats = net(ms.Tensor(np.random.randn(1, 3, 64, 64).astype(np.float32)))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    assert len(convattn.create_model("resnet38").layer3) == 5


def test_resnet_rejects_bad_input():
    with pytest.raises(ValueError, match="four positive block counts"):
        convattn.create_model("acmix_resnet50", layers=(1, 1, 1))
    with pytest.raises(ValueError, match="divisible by head"):
        convattn.create_model("acmix_resnet50", layers=(1, 1, 1, 1), head=5)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("resnet26", layers=(1, 1, 1, 1))
    with pytest.raises((ValueError, RuntimeError), match="3 input channels"):
        net(ms.Tensor(np.zeros((1, 4, 64, 64), np.float32)))


def _cpu_cells(net):
    """Names of the CPU backend's cells (convattn.cpu) inside ``net``."""
    return [n for n, c in net.cells_and_names() if type(c).__module__.startswith("convattn.cpu")]


def test_implementation_objects_chosen_once_at_construction():
    """ACmix holds its attention and conv-path formulations as objects chosen at construction from the form it is
    built in (target, export-safe, CPU backend); construct only calls them, and nothing switches them afterwards."""
    from convattn.layers.acmix import BlockedAcmixAttention, DepthwiseConvForm, GroupedConvForm, UnfoldWindowAttention

    with build_target("GPU"):
        m = ACmix(16, 16, 3, head=2)
        unfold = ACmix(16, 16, 3, head=2, attn_impl="unfold")
    assert isinstance(m.attention, BlockedAcmixAttention) and isinstance(m.conv_form, GroupedConvForm)
    assert m.attention_form() == "fast" and not m.depthwise_conv and not _cpu_cells(m)
    assert isinstance(unfold.attention, UnfoldWindowAttention) and unfold.attention_form() == "unfold"
    for switch in ("use_depthwise_conv", "select_implementation"):  # the post-build switches are gone
        assert not hasattr(m, switch), switch
    m.to_float(ms.float16)  # the implementation objects are children: precision flags reach them
    assert m.attention.get_flags().get("fp16") is True
    with build_target("GPU", export_safe=True):
        safe = ACmix(16, 16, 3, head=2)
    assert isinstance(safe.attention, UnfoldWindowAttention) and safe.attention.gather is safe.unfold
    assert safe.unfold.export_safe and safe.attention_form() == "unfold"
    with build_target("Ascend"):
        asc = ACmix(16, 16, 3, head=2)
    assert isinstance(asc.conv_form, DepthwiseConvForm) and asc.depthwise_conv
    assert isinstance(asc.attention, BlockedAcmixAttention) and not _cpu_cells(asc)
    with build_target("CPU") as form:
        cpu = ACmix(16, 16, 3, head=2)
    if form.cpu_backend:  # the fused kernels, from the CPU backend (convattn.cpu), built once
        from convattn.cpu.window import FusedWindowAttention

        assert isinstance(cpu.attention, FusedWindowAttention) and cpu.attention_form() == "fused"
        assert _cpu_cells(cpu)
    else:
        assert isinstance(cpu.attention, BlockedAcmixAttention) and cpu.attention_form() == "fast"
    with build_target("CPU", cpu_backend=False) as form:
        plain = ACmix(16, 16, 3, head=2)
    assert not form.cpu_backend and form.target == "CPU"
    assert isinstance(plain.attention, BlockedAcmixAttention) and plain.attention_form() == "fast"
    assert not _cpu_cells(plain)
