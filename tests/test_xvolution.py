"""X-volution: deploy form == training form for every option, the explicit dynamic kernel, gradients, bad input,
X-volution ResNets (switch, parity, ONNX/MINDIR export). No official code exists, so there is no fixture parity."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import convattn
from convattn import create_model
from convattn.layers import XVolution, is_deployed, pssa_directions, shift2d, switch_to_deploy
from convattn.models.xvolution import XVolutionResNet
from convattn.models import small_instance_kwargs

RTOL = 1e-5


def _randomise_bn(net, seed=0):
    """Non-trivial running statistics and affine parameters in every BatchNorm."""
    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            c = cell.gamma.shape[0]
            cell.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            cell.beta.set_data(Tensor(rng.normal(0, 0.5, c).astype(np.float32)))
            cell.moving_mean.set_data(Tensor(rng.normal(0, 0.5, c).astype(np.float32)))
            cell.moving_variance.set_data(Tensor(rng.uniform(0.5, 2.0, c).astype(np.float32)))


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _copy_weights(src, dst):
    state = {p.name: ms.Parameter(Tensor(p.asnumpy()), name=p.name) for p in src.get_parameters()}
    assert {p.name for p in dst.get_parameters()} == set(state)
    ms.load_param_into_net(dst, state, strict_load=True)


def _check_switch(build, shape=(2, 6, 11, 9), seed=0):
    """The training form ``build()`` (random BatchNorm statistics) against its deploy form: a second ``build()``
    with the same weights, switched before it ever ran (a compiled GRAPH-mode cell keeps the graph it was compiled
    with, so a form is chosen before the first run). Returns (relative difference, input, deploy output, the
    deploy-form cell)."""
    op = build()
    _randomise_bn(op, seed)
    op.set_train(False)
    x = Tensor(np.random.default_rng(seed + 1).normal(size=shape).astype(np.float32))
    ref = op(x).asnumpy()
    deployed = build()
    _copy_weights(op, deployed)
    deployed.set_train(False)
    deployed.switch_to_deploy()
    assert deployed.deployed and not op.deployed
    got = deployed(x).asnumpy()
    assert got.shape == ref.shape
    return _rel(got, ref), x, got, deployed


def _op(attn, *args, **kwargs):
    """``attn`` 'pssa' (the default 'attention' form), 'pssa-dense' (the dense form) or 'sa'."""
    if attn == "pssa-dense":
        return XVolution(*args, attn="pssa", pssa_form="dense", **kwargs)
    return XVolution(*args, attn=attn, **kwargs)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize("attn", ["pssa", "pssa-dense", "sa"])
def test_deploy_equals_training_every_kernel_stride(pynative, attn, kernel_size, stride):
    err, _, _, op = _check_switch(lambda: _op(attn, 6, 8, kernel_size, stride, num_heads=2 if attn == "sa" else None))
    assert err <= RTOL, f"{attn} k={kernel_size} s={stride}: deploy vs training relative diff {err:.3g}"
    cells = [n for n, _ in op.cells_and_names() if n]
    if attn == "pssa-dense":
        assert cells == ["fused"], "dense PSSA deploy form must be ONE conv"
    elif attn == "pssa":   # one k x k conv + the online coefficients (6 -> 8 channels: a 1x1 value projection)
        assert cells == ["attn_logit", "value", "fused"], cells


@pytest.mark.parametrize("directions,shift", [(4, 1), (8, 1), (8, 2), (4, (1, 3)), (((0, 1), (1, 1)), 1)],
                         ids=["d4L1", "d8L1", "d8L2", "d4L13", "custom"])
@pytest.mark.parametrize("stride", [1, 2])
def test_deploy_equals_training_every_direction_set(pynative, directions, shift, stride):
    err, _, _, _ = _check_switch(lambda: XVolution(5, 7, 3, stride, attn="pssa", directions=directions, shift=shift),
                                 shape=(2, 5, 8, 10))
    assert err <= RTOL, f"directions={directions} L={shift} s={stride}: relative diff {err:.3g}"


def test_deploy_equals_training_graph_and_pynative(ms_mode):
    for attn in ("pssa", "pssa-dense", "sa"):
        err, _, _, _ = _check_switch(lambda: _op(attn, 8, 8, 3, 2, directions=8), shape=(2, 8, 9, 10))
        assert err <= RTOL, f"{attn} [{ms_mode}]: relative diff {err:.3g}"


@pytest.mark.parametrize("form,cout", [("dense", 5), ("attention", 4), ("attention", 5)])
@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (5, 2)])
def test_deploy_is_the_dynamic_convolution(pynative, kernel_size, stride, form, cout):
    """y(x0) = sum_u (W_c + w_A(x0))[u] x(x0 + u) + b with the explicit per-position kernel."""
    _, x, got, op = _check_switch(lambda: XVolution(4, cout, kernel_size, stride, directions=8, pssa_form=form),
                                  shape=(2, 4, 9, 8))
    kern = op.dynamic_kernel(x).asnumpy().astype(np.float64)          # (N, O, C, k, k, Ho, Wo)
    n, o, c, k, _, ho, wo = kern.shape
    p = kernel_size // 2
    xp = np.pad(x.asnumpy().astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((n, o, ho, wo))
    for i in range(k):
        for j in range(k):
            win = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            y += np.einsum("nochw,nchw->nohw", kern[:, :, :, i, j], win)
    y += op.fused.bias.asnumpy()[None, :, None, None]
    if form == "attention":   # the cyclic shift wraps at the border: compare where every tap is inside the map
        ys, xs = np.arange(ho) * stride, np.arange(wo) * stride
        inner = np.outer((ys >= 1) & (ys <= x.shape[2] - 2), (xs >= 1) & (xs <= x.shape[3] - 2))
        y, got = y[:, :, inner], got[:, :, inner]
    assert _rel(y, got) <= RTOL
    static = op.fused.weight.asnumpy()[:, :c]
    assert not np.allclose(kern[0, :, :, :, :, 0, 0], static), "attention coefficients must be content-dependent"
    assert not np.allclose(kern[0, ..., 0, 0], kern[0, ..., -1, -1])


def test_shift_matches_cyclic_roll(pynative):
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    for dy, dx in [(1, 0), (-1, 2), (0, -8), (6, 7), (0, 0)]:
        got = shift2d(Tensor(x), dy, dx).asnumpy()
        np.testing.assert_array_equal(got, np.roll(x, (-dy, -dx), axis=(2, 3)))
    assert pssa_directions(4, 2) == [(0, 2), (0, -2), (2, 0), (-2, 0)]
    assert len(pssa_directions(8, (1, 2))) == 16


def test_training_form_gradients_flow(pynative):
    for attn in ("pssa", "pssa-dense", "sa"):
        op = _op(attn, 4, 6, 3, 2, num_heads=2)
        op.set_train(True)
        x = Tensor(np.random.default_rng(0).normal(size=(2, 4, 8, 8)).astype(np.float32))
        params = op.trainable_params()
        grad_fn = ms.value_and_grad(lambda inp: (op(inp) ** 2).mean(), grad_position=0, weights=params)
        loss, (gx, gw) = grad_fn(x)
        assert np.isfinite(loss.asnumpy()) and np.abs(gx.asnumpy()).max() > 0
        dead = [p.name for p, g in zip(params, gw) if not np.abs(g.asnumpy()).max() > 0]
        assert not dead, f"{attn}: no gradient reaches {dead}"


def test_bad_input_is_refused(pynative):
    with pytest.raises(ValueError, match="odd kernel_size"):
        XVolution(4, 4, 4)
    with pytest.raises(ValueError, match="dilation=1"):
        XVolution(4, 4, 3, dilation=2)
    with pytest.raises(ValueError, match="groups=1"):
        XVolution(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding"):
        XVolution(4, 4, 3, padding=0)
    with pytest.raises(ValueError, match="stride"):
        XVolution(4, 4, 3, stride=0)
    with pytest.raises(ValueError, match="attn must be"):
        XVolution(4, 4, 3, attn="window")
    with pytest.raises(ValueError, match="directions"):
        XVolution(4, 4, 3, directions=6)
    with pytest.raises(ValueError, match="distinct non-zero"):
        XVolution(4, 4, 3, directions=((0, 0),))
    with pytest.raises(ValueError, match="shift"):
        XVolution(4, 4, 3, shift=0)
    with pytest.raises(ValueError, match="num_heads"):
        XVolution(4, 6, 3, attn="sa", num_heads=4)
    with pytest.raises(ValueError, match="pssa_form"):
        XVolution(4, 4, 3, pssa_form="full")
    op = XVolution(4, 4, 3)
    with pytest.raises(RuntimeError, match="deploy-form"):
        op.dynamic_kernel(Tensor(np.zeros((1, 4, 5, 5), np.float32)))
    op.set_train(False)
    op.switch_to_deploy()
    with pytest.raises(RuntimeError, match="already called"):
        op.switch_to_deploy()
    with pytest.raises(RuntimeError, match="cannot be put in training mode"):
        op.set_train(True)
    op.add_flags_recursive(training=True)  # a parent's set_train(True) reaches children this way
    with pytest.raises(RuntimeError, match="cannot be trained"):
        op(Tensor(np.zeros((1, 4, 5, 5), np.float32)))


# ----------------------------------------------------------------------------------------------- networks
def test_resnet_parameter_counts():
    count = lambda net: sum(int(np.prod(p.shape)) for p in net.trainable_params())  # noqa: E731
    assert count(create_model("resnet34")) == 21_797_672                           # torchvision resnet34
    # PSSA 'attention' form (default): ResNet-34 + 56_832 = per X-volution its two BNs (4C), the D*C
    # coefficient weights and, in layer3.0.conv1 (128 -> 256), a 1x1 value projection; the 'dense' form's
    # D k x k convs over the products make it 2.25x ResNet-34
    assert count(create_model("xvolution_resnet34")) == 21_797_672 + 12 * 4 * 256 + 11 * 4 * 256 + 4 * 128 + 128 * 256
    assert count(create_model("xvolution_resnet34", pssa_form="dense")) == 48_941_864
    assert count(create_model("xvolution_resnet50")) == 25_569_320
    net = create_model("xvolution_resnet50", attn="sa")
    assert count(net) == 26_742_824
    xv = [n for n, c in net.cells_and_names() if isinstance(c, XVolution)]
    assert xv == [f"layer3.{i}.conv2" for i in range(6)]
    net = create_model("xvolution_resnet34", layers=(1, 2, 1, 1), xvol_stages=(2, 4))
    xv = [n for n, c in net.cells_and_names() if isinstance(c, XVolution)]
    assert xv == ["layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2", "layer4.0.conv1",
                  "layer4.0.conv2"]
    with pytest.raises(ValueError, match="xvol_stages"):
        create_model("xvolution_resnet34", xvol_stages=(5,))


@pytest.mark.parametrize("name,attn,mode", [("xvolution_resnet34", "pssa", "graph"), ("xvolution_resnet34", "sa", "graph"),
                                            ("xvolution_resnet50", "pssa", "pynative"),
                                            ("xvolution_resnet50", "sa", "pynative")])
def test_network_switch_keeps_logits(name, attn, mode):
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        _check_network_switch(name, attn)
    finally:
        ms.set_context(mode=previous)


def _check_network_switch(name, attn):
    """The deploy form of a network (create_model(deploy=True), the one entry point) built from the weights of its
    training form gives the training form's logits; it cannot be switched again or trained."""
    small, size = small_instance_kwargs(name)
    net = create_model(name, num_classes=10, attn=attn, **small)
    _randomise_bn(net, 3)
    net.set_train(False)
    x = Tensor(np.random.default_rng(4).normal(size=(2,) + tuple(size)).astype(np.float32))
    ref = net(x).asnumpy()
    assert not is_deployed(net) and not net.form.deploy and net.deploy_report == []
    state = {p.name: ms.Parameter(Tensor(p.asnumpy()), name=p.name) for p in net.get_parameters()}
    dep = create_model(name, num_classes=10, attn=attn, pretrained=state, deploy=True, **small)
    assert is_deployed(dep) and dep.form.deploy and dep.deploy_report
    got = dep(x).asnumpy()
    assert _rel(got, ref) <= RTOL, f"{name} ({attn}): logits of the deploy form differ by {_rel(got, ref):.3g}"
    with pytest.raises(RuntimeError, match="already called"):
        dep.switch_to_deploy()
    with pytest.raises(RuntimeError, match="cannot be trained"):
        dep.set_train(True)


def test_leaves_first_hook_then_network_method():
    """A generic hook that switches every cell with switch_to_deploy (children first) ends in the same network."""
    net = create_model("xvolution_resnet34", num_classes=10, layers=(1, 1, 1, 1))
    net.set_train(False)
    cells = [c for _, c in net.cells_and_names() if callable(getattr(c, "switch_to_deploy", None))]
    for cell in reversed(cells):
        cell.switch_to_deploy()
    assert is_deployed(net) and net.deployed
    with pytest.raises(RuntimeError, match="already in deploy form"):
        switch_to_deploy(net)


def test_network_exports_onnx_and_mindir(tmp_path):
    """The export form of an X-volution ResNet (create_model(export_safe=True, cpu_backend=False, deploy=True):
    standard cells, the edge-padded stem max-pool ONNX can express, branches merged) built from the training
    form's weights equals it, and its ONNX and MINDIR graphs too."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from mindspore import onnx as ms_onnx
    from convattn.layers import ExportSafeMaxPool2d

    net = create_model("xvolution_resnet34", num_classes=10, layers=(1, 1, 1, 1))
    _randomise_bn(net, 5)
    net.set_train(False)
    x = np.random.default_rng(6).normal(size=(1, 3, 64, 64)).astype(np.float32)
    ref = net(Tensor(x)).asnumpy()
    state = {p.name: ms.Parameter(Tensor(p.asnumpy()), name=p.name) for p in net.get_parameters()}
    # the CPU kernels are ops.Custom: exported graphs use the standard cells
    dep = create_model("xvolution_resnet34", num_classes=10, layers=(1, 1, 1, 1), pretrained=state,
                       export_safe=True, cpu_backend=False, deploy=True)
    assert dep.form.export_safe and not dep.form.cpu_backend and dep.form.deploy and is_deployed(dep)
    assert not [n for n, c in dep.cells_and_names() if type(c).__module__.startswith("convattn.cpu")]
    assert isinstance(dep.maxpool, ExportSafeMaxPool2d)
    assert _rel(dep(Tensor(x)).asnumpy(), ref) <= RTOL
    path = str(tmp_path / "xvol34.onnx")
    ms_onnx.export(dep, Tensor(x), file_name=path, input_names=["x"], output_names=["y"])
    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": x})[0]
    assert _rel(out, ref) <= 1e-4, f"onnxruntime vs training form: {_rel(out, ref):.3g}"
    ms.export(dep, Tensor(x), file_name=str(tmp_path / "xvol34"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "xvol34.mindir")))
    out = graph(Tensor(x)).asnumpy()
    assert _rel(out, ref) <= 1e-5, f"MINDIR vs training form: {_rel(out, ref):.3g}"
