"""ACmix-SAN (designed from the ACmix paper; no official code): counts, designed layout, modes, training, export-safe
gather, grouped vs depth-wise conv path, bad input."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.convert import load_official_state
from convattn.layers import ACmixSAM
from convattn.layers.san_attention import SAM
from convattn.models import small_instance_kwargs
from test_san import assert_export_safe_equals_fast

# Our counts (trainable, 1000 classes) and the ACmix README's (SAN rows). README baselines = our SAN patchwise counts
# (11.84 / 16.18 / 20.52 M); the design adds sum over bottlenecks of (C/4 * 81 + 9 * 12 + 2).
PARAMS = {"acmix_san10": (11995152, 12.1), "acmix_san15": (16414944, 16.6), "acmix_san19": (20830304, 21.2)}
SAN_PATCHWISE = {"acmix_san10": 11841124, "acmix_san15": 16181310, "acmix_san19": 20518470}
LAYERS = {"acmix_san10": (2, 1, 2, 4, 1), "acmix_san15": (3, 2, 3, 5, 2), "acmix_san19": (3, 3, 4, 6, 3)}


def _n(net):
    return sum(p.size for p in net.trainable_params())


def test_acmix_san_parameter_counts_and_cfgs():
    for name, (ours, readme_m) in PARAMS.items():
        net = convattn.create_model(name)
        n = _n(net)
        added = sum(k * (64 * m // 4 * 81 + 9 * 12 + 2) for k, m in zip(LAYERS[name], (1, 4, 8, 16, 32)))
        assert n == ours == SAN_PATCHWISE[name] + added, (name, n)
        assert abs(n / 1e6 - readme_m) / readme_m < 0.02, (name, n)
        cfg = convattn.get_model_cfg(name)
        assert cfg["convert_rules"] == "acmix" and cfg["upstream"] == "none (designed from the paper)"
        assert cfg["top1"] == {"acmix_san10": 77.6, "acmix_san15": 78.4, "acmix_san19": 78.7}[name]
    names = {p.name for p in net.get_parameters()}
    for key in ("layer0.0.sam.conv_w.5.weight", "layer1.0.sam.fc.weight", "layer1.0.sam.dep_conv.weight",
                "layer4.2.sam.rate1", "layer4.2.sam.rate2", "layer4.2.conv.bias", "fc.weight"):
        assert key in names, key
    assert not any(k.endswith(("sam.fc.bias", "dep_conv.bias")) for k in names)  # ACmix-ResNet: no fc/dep_conv bias
    sam = net.layer3[0].sam  # C = 1024: phi/psi 64 ch, beta 256 ch, head_dim = 256 / 8 = 32
    assert (sam.head_dim, sam.qk_heads, sam.v_heads) == (32, 2, 8)
    assert tuple(sam.fc.weight.shape) == (9, 12, 1, 1) and tuple(sam.dep_conv.weight.shape) == (256, 9, 3, 3)
    assert float(sam.rate1.asnumpy()[0]) == 0.5 and float(sam.rate2.asnumpy()[0]) == 0.5


def _conv2d_np(x, w, groups):
    """Zero-padded 3x3 grouped convolution (stride 1), as torch.nn.functional.conv2d."""
    n, cin, h, wd = x.shape
    cout, per_in, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2,) * 2, (k // 2,) * 2))
    y = np.zeros((n, cout, h, wd), np.float64)
    outs_per_group = cout // groups
    for o in range(cout):
        g = o // outs_per_group
        for i in range(per_in):
            for a in range(k):
                for b in range(k):
                    y[:, o] += w[o, i, a, b] * xp[:, g * per_in + i, a:a + h, b:b + wd]
    return y


def test_acmix_sam_equals_designed_formula():
    """rate1 * SAM(x) + rate2 * dep_conv(fc(phi, psi, beta heads)), checked against an independent NumPy version."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(7)
    rs = np.random.RandomState(7)
    net = ACmixSAM("patchwise", 16, 4, 8, share_planes=4, kernel_size=3)  # head_dim 2: phi 2, psi 2, beta 4 heads
    net.set_train(False)
    for p in (net.fc.weight, net.dep_conv.weight, net.rate1, net.rate2):  # leave the shift init and 0.5 behind
        p.set_data(ms.Tensor(rs.randn(*p.shape).astype(np.float32)))
    x = rs.randn(2, 16, 5, 6).astype(np.float32)
    got = net(ms.Tensor(x)).asnumpy()

    sam = SAM("patchwise", 16, 4, 8, 4, 3)
    ms.load_param_into_net(sam, {p.name: ms.Parameter(p.asnumpy(), name=p.name) for p in net.get_parameters()
                                 if not p.name.startswith(("fc.", "dep_conv.", "rate"))}, strict_load=True)
    sam.set_train(False)
    att = sam(ms.Tensor(x)).asnumpy().astype(np.float64)

    def proj(conv):
        w, b = conv.weight.asnumpy()[:, :, 0, 0], conv.bias.asnumpy()
        return np.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None]

    hd, hw = 2, 30
    heads = np.concatenate([proj(c).reshape(2, -1, hd, hw) for c in (net.conv1, net.conv2, net.conv3)], 1)
    assert heads.shape[1] == 2 + 2 + 4
    f = np.einsum("km,nmdl->nkdl", net.fc.weight.asnumpy()[:, :, 0, 0], heads)      # (N, 9, hd, HW)
    f = f.transpose(0, 2, 1, 3).reshape(2, hd * 9, 5, 6)                           # channel d*9 + i
    conv = _conv2d_np(f, net.dep_conv.weight.asnumpy().astype(np.float64), groups=hd)
    ref = net.rate1.asnumpy()[0] * att + net.rate2.asnumpy()[0] * conv
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()), np.abs(got - ref).max()


def test_acmix_san_forward_shapes_and_features(ms_mode):
    small, size = small_instance_kwargs("acmix_san15")
    net = convattn.create_model("acmix_san15", features_only=True, **small)
    net.set_train(False)
    feats = net(ms.Tensor(np.random.RandomState(0).randn(2, *size).astype(np.float32)))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4),
                                               (2, 1024, 2, 2)]
    assert all(np.isfinite(f.asnumpy()).all() for f in feats)
    assert not any(p.name.startswith("fc.") for p in net.get_parameters())


def test_acmix_san_train_step_updates_both_paths():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    small, size = small_instance_kwargs("acmix_san10")
    net = convattn.create_model("acmix_san10", num_classes=5, **small)
    rs = np.random.RandomState(1)
    x = ms.Tensor(rs.randn(2, *size).astype(np.float32))
    y = ms.Tensor(np.array([1, 3], np.int32))
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.SGD(net.trainable_params(), learning_rate=0.05, momentum=0.9)

    def forward(a, b):
        logits = net(a)
        return loss_fn(logits, b), logits

    grad_fn = ms.value_and_grad(forward, None, opt.parameters, has_aux=True)
    net.set_train(True)
    (loss, logits), grads = grad_fn(x, y)
    assert tuple(logits.shape) == (2, 5) and np.isfinite(float(loss.asnumpy()))
    g = {p.name: np.abs(d.asnumpy()).max() for p, d in zip(opt.parameters, grads)}
    for key in ("layer2.0.sam.fc.weight", "layer2.0.sam.dep_conv.weight", "layer2.0.sam.rate1", "layer2.0.sam.rate2",
                "layer2.0.sam.conv_w.5.weight", "layer2.0.sam.conv1.weight", "layer2.0.sam.conv3.weight"):
        assert np.isfinite(g[key]) and g[key] > 0, key
    before = net.layer2[0].sam.rate2.asnumpy().copy()
    opt(grads)
    assert not np.array_equal(before, net.layer2[0].sam.rate2.asnumpy())


def test_acmix_san_export_safe_gather_equals_fast_path():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = ms.Tensor(np.random.RandomState(2).randn(2, 32, 9, 8).astype(np.float32))
    assert_export_safe_equals_fast(lambda: ACmixSAM("patchwise", 32, 2, 8, share_planes=8, kernel_size=7), x)


def test_acmix_san_depthwise_conv_path_equals_grouped():
    """The Ascend (depth-wise) form loads grouped-layout weights through the 'acmix' rules and gives the same output."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    kw = dict(layers=(1, 1, 1, 1, 1), kernels=(3, 3, 3, 3, 3), base_width=32, num_classes=4)
    grouped = convattn.create_model("acmix_san10", depthwise_conv=False, **kw)
    dw = convattn.create_model("acmix_san10", depthwise_conv=True, **kw)
    assert tuple(dw.layer1[0].sam.dep_conv.weight.shape) == (32 * 9, 1, 3, 3)
    rs = np.random.RandomState(3)
    for p in grouped.get_parameters():  # non-shift conv weights, so the layouts really have to agree
        if "dep_conv" in p.name:
            p.set_data(ms.Tensor(rs.randn(*p.shape).astype(np.float32)))
    info = load_official_state(dw, {p.name: p.asnumpy() for p in grouped.get_parameters()}, rules="acmix")
    assert len(info["loaded"]) == len(list(dw.get_parameters()))
    x = ms.Tensor(rs.randn(1, 3, 64, 64).astype(np.float32))
    grouped.set_train(False)
    dw.set_train(False)
    a, b = grouped(x).asnumpy(), dw(x).asnumpy()
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(a).max()), np.abs(a - b).max()


@pytest.mark.parametrize("kwargs,match", [
    (dict(head_dim=3), r"head_dim=3 must .*divid"),
    (dict(head_dim=0), "head_dim"),
    (dict(base_width=24), "base_width"),
    (dict(kernel_conv=2), "kernel_conv must be odd"),
])
def test_acmix_san_rejects_bad_construction(kwargs, match):
    args = dict(layers=(1, 1, 1, 1, 1), base_width=32)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        convattn.create_model("acmix_san10", **args)


@pytest.mark.parametrize("shape,match", [((1, 4, 64, 64), "3 input channels"), ((3, 64, 64), "NCHW")])
def test_acmix_san_rejects_bad_input(shape, match):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("acmix_san10", **small_instance_kwargs("acmix_san10")[0])
    net.set_train(False)
    with pytest.raises((ValueError, RuntimeError), match=match):
        net(ms.Tensor(np.zeros(shape, np.float32)))
