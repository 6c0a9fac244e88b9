"""SAN: parity with the official PyTorch code, parameter counts, paper options, features, bad input."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

import convattn
from convattn.convert import load_official_state, read_official_state
from convattn.layers import LocalWindowGather, build_target
from convattn.layers.san_attention import MAPPINGS, PAIRWISE_RELATIONS, PATCHWISE_RELATIONS, SAM
from convattn.models.san import SAN, Bottleneck
from convattn.models import small_instance_kwargs
from conftest import require_reference
from parity import run_parity
from workers import run_in_workers, unwrap

# Trainable parameters of the official model/san.py at 1000 classes (model-facts §2.3, SAN README).
OFFICIAL_PARAMS_M = {"san10_pairwise": 10.53, "san15_pairwise": 14.07, "san19_pairwise": 17.60,
                     "san10_patchwise": 11.84, "san15_patchwise": 16.18, "san19_patchwise": 20.52}

# Constructors exactly as the fixture README lists them (official argument order).
# The SAM fixtures run through both aggregation formulations ('auto' = the fused CPU kernel where available,
# 'unfold' = the gather that GPU/Ascend and ONNX run); the bottlenecks through the default.
FIXTURES = [
    ("san_sam_pairwise_k3.npz", lambda impl: SAM(0, 64, 8, 32, 8, 3, attn_impl=impl)),
    ("san_sam_pairwise_k7.npz", lambda impl: SAM(0, 64, 8, 32, 8, 7, attn_impl=impl)),
    ("san_sam_patchwise_k3.npz", lambda impl: SAM(1, 64, 8, 32, 8, 3, attn_impl=impl)),
    ("san_sam_patchwise_k7.npz", lambda impl: SAM(1, 64, 8, 32, 8, 7, attn_impl=impl)),
    ("san_bottleneck_pairwise_k7.npz", lambda impl: Bottleneck(0, 64, 4, 16, 64, 8, 7)),
    ("san_bottleneck_patchwise_k7.npz", lambda impl: Bottleneck(1, 64, 4, 16, 64, 8, 7)),
]
SAM_FIXTURES = [f for f in FIXTURES if f[0].startswith("san_sam")]


@pytest.mark.parametrize("name,build", FIXTURES, ids=[f[0][:-4] for f in FIXTURES])
def test_san_modules_match_official(ms_mode, name, build):
    got, ref, tol = run_parity(build("auto"), name, rules="san")
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{name} [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("name,build", SAM_FIXTURES, ids=[f[0][:-4] for f in SAM_FIXTURES])
def test_san_gather_aggregation_matches_official(name, build):
    got, ref, tol = run_parity(build("unfold"), name, rules="san")
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{name} [unfold]: max|ours - official| = {err:.3g} > {tol:.3g}"


def test_san_dataparallel_checkpoint_loads():
    """A genuine torch.save file as the SAN trainer writes it ({'state_dict'}, keys prefixed 'module.')."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    state = read_official_state(str(require_reference("pth/san_sam_pairwise_k3_module.pth")))
    with np.load(require_reference("san_sam_pairwise_k3.npz")) as f:
        inp, ref = f["input"], f["output"]
    net = SAM(0, 64, 8, 32, 8, 3)
    info = load_official_state(net, state, rules="san")
    assert len(info["loaded"]) == len(list(net.get_parameters()))
    net.set_train(False)
    err = float(np.abs(net(ms.Tensor(inp)).asnumpy() - ref).max())
    assert err <= 1e-5 * max(1.0, float(np.abs(ref).max()))


def copy_weights(src, dst):
    """Load every parameter of ``src`` into ``dst`` (the same names and shapes: one network in two forms)."""
    state = {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), name=p.name) for p in src.get_parameters()}
    assert {p.name for p in dst.get_parameters()} == set(state)
    ms.load_param_into_net(dst, state, strict_load=True)


def assert_export_safe_equals_fast(build, x):
    """Eval output of ``build()`` in the default form and of ``build()`` built export-safe (every gather in its
    slice form) with the same weights agree to 1e-6 relative (used by tests/test_acmix_san.py too)."""
    net = build()
    with build_target(None, export_safe=True):
        safe_net = build()
    assert not any(c.export_safe for _, c in net.cells_and_names() if isinstance(c, LocalWindowGather))
    gathers = [c for _, c in safe_net.cells_and_names() if isinstance(c, LocalWindowGather)]
    assert gathers and all(g.export_safe for g in gathers)
    assert not any(getattr(c, "fused", False) is True for _, c in safe_net.cells_and_names())
    copy_weights(net, safe_net)
    net.set_train(False)
    safe_net.set_train(False)
    fast = net(x).asnumpy()
    safe = safe_net(x).asnumpy()
    assert float(np.abs(fast - safe).max()) <= 1e-6 * max(1.0, float(np.abs(fast).max()))


@pytest.mark.parametrize("sa_type,k", [("pairwise", 7), ("patchwise", 3)])
def test_san_export_safe_path_equals_fast_path(sa_type, k):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = ms.Tensor(np.random.RandomState(1).randn(2, 16, 9, 8).astype(np.float32))
    assert_export_safe_equals_fast(lambda: SAM(sa_type, 16, 4, 16, 4, k), x)


def numpy_sam_aggregation(x3, w, k):
    """Official aggregation_refpad semantics: y[c] = sum_kk w[c % n_w, kk] * x3[c, reflect-padded neighbour]."""
    n, c, h, wd = x3.shape
    p = k // 2
    xp = np.pad(x3, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
    y = np.zeros_like(x3)
    nw = w.shape[1]
    for t in range(k * k):
        i, j = divmod(t, k)
        for ch in range(c):
            y[:, ch] += w[:, ch % nw, t].reshape(n, h, wd) * xp[:, ch, i:i + h, j:j + wd]
    return y


def test_san_aggregation_shares_weights_interleaved():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rs = np.random.RandomState(2)
    sam = SAM("pairwise", 8, 2, 12, 3, 3)  # n_w = 4: feature channels 0, 4, 8 share weight channel 0
    x3 = rs.randn(2, 12, 5, 6).astype(np.float32)
    w = rs.randn(2, 4, 9, 30).astype(np.float32)
    got = sam.aggregate(ms.Tensor(x3), ms.Tensor(w)).asnumpy()
    np.testing.assert_allclose(got, numpy_sam_aggregation(x3, w, 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS_M))
def test_san_parameter_counts(name):
    net = convattn.create_model(name)
    n = sum(p.size for p in net.trainable_params()) / 1e6
    assert round(n, 2) == OFFICIAL_PARAMS_M[name], f"{name}: {n:.4f} M trainable parameters"


def test_san_official_key_names():
    net = convattn.create_model("san10_pairwise", layers=(1, 1, 1, 1, 1))
    names = {p.name for p in net.get_parameters()}
    for key in ("conv_in.weight", "bn_in.gamma", "conv4.weight", "bn4.moving_variance", "layer0.0.bn1.gamma",
                "layer1.0.sam.conv1.weight", "layer1.0.sam.conv3.bias", "layer1.0.sam.conv_w.0.gamma",
                "layer1.0.sam.conv_w.2.weight", "layer1.0.sam.conv_w.3.beta", "layer1.0.sam.conv_w.5.bias",
                "layer1.0.sam.conv_p.weight", "layer4.0.bn2.gamma", "layer4.0.conv.bias", "fc.weight", "fc.bias"):
        assert key in names, key
    patch = {p.name for p in convattn.create_model("san10_patchwise", layers=(1, 1, 1, 1, 1)).get_parameters()}
    assert not any("conv_p" in k for k in patch)
    cfg = convattn.get_model_cfg("san19_patchwise")
    assert cfg["convert_rules"] == "san" and cfg["classifier"] == "fc" and cfg["top1"] == 78.2


def _tiny_step(net, x, y, steps=1):
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.SGD(net.trainable_params(), learning_rate=0.05, momentum=0.9)

    def forward(a, b):
        return loss_fn(net(a), b)

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)
    losses = []
    net.set_train(True)
    for _ in range(steps):
        loss, grads = grad_fn(x, y)
        opt(grads)
        losses.append(float(loss.asnumpy()))
    return losses


class _SamHead(nn.Cell):
    def __init__(self, sam, channels):
        super().__init__()
        self.sam = sam
        self.fc = nn.Dense(channels, 3)

    def construct(self, x):
        return self.fc(ops.mean(self.sam(x), axis=(2, 3)))


OPTIONS = ([("pairwise", r, "r-l-r-l", True) for r in PAIRWISE_RELATIONS]
           + [("pairwise", "subtraction", "r-l-r-l", False)]
           + [("patchwise", r, "r-l-r-l", True) for r in PATCHWISE_RELATIONS]
           + [(t, None, m, True) for t in ("pairwise", "patchwise") for m in MAPPINGS[1:]])


def _option_case(sa_type, relation, mapping, pos, onnx_path):
    """One option, in a worker process: SAM in a small head trains a step, then its export-safe form goes through
    mindspore.onnx.export. Returns the first loss, the parameters the step changed, and the trained cell's eval
    output and its ONNX output on the same input."""
    import onnxruntime as ort

    ms.set_context(mode=ms.PYNATIVE_MODE)
    sam = SAM(sa_type, 8, 4, 8, 4, 3, relation=relation, mapping=mapping, position_encoding=pos)
    net = _SamHead(sam, 8)
    rs = np.random.RandomState(3)
    x = ms.Tensor(rs.randn(4, 8, 6, 6).astype(np.float32))
    y = ms.Tensor(np.array([0, 1, 2, 1], np.int32))
    before = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    losses = _tiny_step(net, x, y, steps=1)
    changed = [p.name for p in net.trainable_params() if not np.allclose(before[p.name], p.asnumpy())]
    net.set_train(False)
    ref = net(x).asnumpy()
    with build_target(None, export_safe=True):  # the export-safe form of the trained cell: the same weights
        safe = _SamHead(SAM(sa_type, 8, 4, 8, 4, 3, relation=relation, mapping=mapping, position_encoding=pos), 8)
    copy_weights(net, safe)
    safe.set_train(False)
    ms.onnx.export(safe, x, file_name=onnx_path, input_names=["x"], output_names=["y"])
    out = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"x": x.asnumpy()})[0]
    return {"loss": losses[0], "changed": changed, "ref": ref, "onnx": out}


@pytest.fixture(scope="module")
def option_results(tmp_path_factory):
    """Every option's case in two worker processes (tests/workers.py): ``{option: result or exception}``."""
    base = tmp_path_factory.mktemp("san_options")
    return run_in_workers(_option_case, {opt: (opt + (str(base / f"sam{i}.onnx"),), {})
                                         for i, opt in enumerate(OPTIONS)})


@pytest.mark.parametrize("sa_type,relation,mapping,pos", OPTIONS)
def test_san_options_build_and_train_a_step(sa_type, relation, mapping, pos, option_results):
    """Every relation / mapping / position option builds, trains a step (the attention-weight and output
    convolutions change) and exports to ONNX: the export-safe form through mindspore.onnx.export equals the
    trained cell (issue 6)."""
    r = unwrap(option_results[(sa_type, relation, mapping, pos)])
    assert np.isfinite(r["loss"])
    assert any(n.startswith("sam.conv_w") for n in r["changed"]) and any(n.startswith("sam.conv3") for n in r["changed"])
    assert np.abs(r["onnx"] - r["ref"]).max() <= 1e-5 * max(1.0, float(np.abs(r["ref"]).max()))


@pytest.mark.parametrize("sa_type", ["pairwise", "patchwise"])
def test_san_network_trains_on_digits(sa_type):
    """A whole SAN (every stage, small width) learns a fixed batch of the scikit-learn digits."""
    from sklearn.datasets import load_digits

    ms.set_context(mode=ms.PYNATIVE_MODE)
    d = load_digits()
    imgs = np.kron(d.images[:8] / 16.0, np.ones((8, 8)))[:, None].astype(np.float32)  # 8x8 -> 64x64
    x = ms.Tensor(np.repeat(imgs, 3, axis=1))
    y = ms.Tensor(d.target[:8].astype(np.int32))
    ms.set_seed(0)  # deterministic initialisation: the check is about learning, not about a lucky draw
    net = SAN(sa_type, layers=(1, 1, 1, 1, 1), kernels=(3, 3, 3, 3, 3), base_width=32, num_classes=10)
    losses = _tiny_step(net, x, y, steps=4)
    assert all(np.isfinite(losses)) and min(losses[1:]) < losses[0], losses


def test_san_features_only():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    small, size = small_instance_kwargs("san10_pairwise")
    net = convattn.create_model("san10_pairwise", features_only=True, **small)
    net.set_train(False)
    feats = net(ms.Tensor(np.random.randn(1, *size).astype(np.float32)))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16),
                                               (1, 1024, 8, 8), (1, 2048, 4, 4)]
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 8, 16, 32]
    assert not any(p.name.startswith("fc.") for p in net.get_parameters())
    sub = convattn.create_model("san10_patchwise", features_only=True, out_indices=(2, 4),
                                **small_instance_kwargs("san10_patchwise", base_width=32)[0])
    sub.set_train(False)
    assert [f.shape[1] for f in sub(ms.Tensor(np.zeros((1, 3, 128, 128), np.float32)))] == [256, 1024]


@pytest.mark.parametrize("kwargs,match", [
    (dict(sa_type=0, in_planes=16, rel_planes=4, out_planes=12, share_planes=8), "not divisible by share_planes"),
    (dict(sa_type=0, in_planes=16, rel_planes=4, out_planes=16, share_planes=8, kernel_size=4), "odd"),
    (dict(sa_type=0, in_planes=16, rel_planes=4, out_planes=16, relation="star"), "unknown pairwise relation"),
    (dict(sa_type=1, in_planes=16, rel_planes=4, out_planes=16, relation="subtraction"), "unknown patchwise relation"),
    (dict(sa_type=1, in_planes=16, rel_planes=4, out_planes=16, mapping="l-l"), "unknown mapping"),
    (dict(sa_type=2, in_planes=16, rel_planes=4, out_planes=16), "sa_type"),
    (dict(sa_type=0, in_planes=16, rel_planes=0, out_planes=16), "rel_planes"),
])
def test_sam_rejects_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAM(**kwargs)


def test_san_rejects_bad_network_arguments():
    with pytest.raises(ValueError, match="base_width"):
        convattn.create_model("san10_pairwise", base_width=24)
    with pytest.raises(ValueError, match="five stages"):
        convattn.create_model("san10_pairwise", layers=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="in_planes == out_planes"):
        Bottleneck(0, 32, 2, 8, 64)
    with pytest.raises(ValueError, match="relation"):
        convattn.create_model("san10_patchwise", relation="dot", layers=(1, 1, 1, 1, 1))


@pytest.mark.parametrize("shape,match", [((1, 4, 64, 64), "3 input channels"), ((3, 64, 64), "NCHW")])
def test_san_rejects_bad_input(shape, match):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("san10_pairwise", layers=(1, 1, 1, 1, 1), base_width=32)
    net.set_train(False)
    with pytest.raises((ValueError, RuntimeError), match=match):
        net(ms.Tensor(np.zeros(shape, np.float32)))


@pytest.mark.parametrize("sa_type", ["pairwise", "patchwise"])
def test_san_chunked_aggregation_equals_single_gather(sa_type):
    """Training chunks the aggregation under recompute (memory); values and gradients equal one gather."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(5)
    chunked = SAM(sa_type, 16, 4, 16, 4, 3, attn_impl="unfold")
    single = SAM(sa_type, 16, 4, 16, 4, 3, agg_chunks=1, attn_impl="unfold")
    assert chunked.agg_chunks == 4
    ms.load_param_into_net(single, {p.name: ms.Parameter(p.asnumpy().copy(), name=p.name)
                                    for p in chunked.get_parameters()})
    x = ms.Tensor(np.random.RandomState(4).randn(2, 16, 7, 6).astype(np.float32))
    outs = []
    for net in (chunked, single):
        net.set_train(True)
        loss, grads = ms.value_and_grad(lambda a: (net(a) ** 2).mean(), None, net.trainable_params())(x)
        outs.append((float(loss.asnumpy()), [g.asnumpy() for g in grads]))
    assert outs[0][0] == pytest.approx(outs[1][0], rel=1e-6)
    for a, b in zip(outs[0][1], outs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="agg_chunks"):
        SAM(sa_type, 16, 4, 16, 4, 3, agg_chunks=3)


def test_sam_module_imports_no_sibling_operator():
    """Layering: SAN's attention takes shared pieces (the coordinate grid) from the neutral helpers module, not from
    another operator's module (it used to import ACmix's)."""
    import re
    from pathlib import Path
    import convattn.layers.san_attention as san_attention

    text = Path(san_attention.__file__).read_text()
    assert not re.search(r"from \.(acmix|xvolution|window_attention|lka|dynamic_attention)\b", text)


def test_sam_is_one_class_per_attention_type():
    """SAM(sa_type, ...) builds the module of that attention type (also as a model's ``sam_cls`` class attribute);
    parameter names equal the official ones (the parity tests load official state dicts into them)."""
    from convattn.layers.acmix_san import ACmixPairwiseSAM, ACmixPatchwiseSAM, ACmixSAM
    from convattn.layers.san_attention import PairwiseSAM, PatchwiseSAM
    from convattn.models.san import Bottleneck

    pair, patch = SAM("pairwise", 16, 4, 16, 4, 3), SAM(1, 16, 4, 16, 4, 3)
    assert type(pair) is PairwiseSAM and type(patch) is PatchwiseSAM
    assert not hasattr(patch, "conv_p") and not hasattr(patch, "softmax") and not hasattr(patch, "fused_diff")
    assert [p.name for p in PatchwiseSAM(16, 4, 16, 4, 3).get_parameters()] == [p.name for p in patch.get_parameters()]
    assert type(ACmixSAM(0, 16, 4, 16, 4, 3)) is ACmixPairwiseSAM
    assert type(ACmixSAM("patchwise", 16, 4, 16, 4, 3)) is ACmixPatchwiseSAM
    assert type(Bottleneck(1, 16, 2, 4, 16, 4, 3).sam) is PatchwiseSAM
