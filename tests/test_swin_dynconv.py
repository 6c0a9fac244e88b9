"""Swin with the dynamic-convolution attention cores: the pluggable softmax core reproduces Swin's own window
attention (shifted mask included); swin_tiny_relu / swin_tiny_dw build, train a step, report MACs; bad options."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import convattn
from convattn.bench.macs import count_macs
from convattn.layers import build_target
from convattn.layers.dynamic_attention import build_attention_core
from convattn.layers.window_attention import WindowAttention, shifted_window_mask
from convattn.models import small_instance_kwargs


def test_softmax_core_equals_swin_window_attention(ms_mode):
    dim, heads, ws, h = 12, 3, 4, 8
    rng = np.random.default_rng(0)
    # the formulas, in MindSpore's ops (the CPU backend's fused kernels round differently in float32)
    with build_target(None, cpu_backend=False) as form:
        ref = WindowAttention(dim, ws, heads)
        dyn = WindowAttention(dim, ws, heads, core=build_attention_core(dim, heads, attn_act="softmax"))
    assert not form.cpu_backend
    assert not [n for net in (ref, dyn) for n, c in net.cells_and_names()
                if type(c).__module__.startswith("convattn.cpu")]
    for p, q in zip(ref.get_parameters(), dyn.get_parameters()):
        assert p.name == q.name
        v = rng.normal(0, 0.5, p.shape).astype(np.float32)
        p.set_data(Tensor(v))
        q.set_data(Tensor(v))
    x = Tensor(rng.normal(size=(2, h, h, dim)).astype(np.float32))
    mask = Tensor(shifted_window_mask(h, h, ws, ws // 2))
    for m in (None, mask):
        np.testing.assert_allclose(dyn(x, m).asnumpy(), ref(x, m).asnumpy(), rtol=1e-5, atol=2e-6)


def _tiny(name, **kwargs):
    small, size = small_instance_kwargs(name, **kwargs)
    return convattn.create_model(name, num_classes=10, **small), size


@pytest.mark.parametrize("name", ["swin_tiny_relu", "swin_tiny_dw"])
def test_train_step(name):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    # one stage (two blocks: plain and shifted windows with the mask): the backward of PatchMerging's strided
    # slices fails on CPU in MindSpore 2.10 ("StridedSliceGrad ... input memory out of bounds") for plain
    # swin_tiny too; that belongs to swin.py, not to the attention cores tested here
    net, size = _tiny(name, depths=(2,), num_heads=(1,))
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=1e-3)
    grad_fn = ms.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)
    net.set_train(True)
    x = Tensor(np.random.default_rng(0).normal(size=(2,) + tuple(size)).astype(np.float32))
    y = Tensor(np.array([1, 7], np.int32))
    loss0, grads = grad_fn(x, y)
    opt(grads)
    g = {p.name: float(np.abs(gr.asnumpy()).max()) for p, gr in zip(opt.parameters, grads)}
    proj = "layers.0.blocks.1.attn.qk.weight" if name.endswith("_dw") else "layers.0.blocks.1.attn.qkv.weight"
    assert np.isfinite(loss0.asnumpy()) and g[proj] > 0
    assert g["layers.0.blocks.1.attn.relative_position_bias_table"] > 0     # p enters without softmax too
    for _ in range(2):
        loss, grads = grad_fn(x, y)
        opt(grads)
    assert float(loss.asnumpy()) < float(loss0.asnumpy())


def test_graph_mode_forward_and_options():
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for name in ("swin_tiny_relu", "swin_tiny_dw"):
            net, size = _tiny(name)
            net.set_train(False)
            out = net(Tensor(np.random.default_rng(1).normal(size=(1,) + tuple(size)).astype(np.float32)))
            assert out.shape == (1, 10) and np.isfinite(out.asnumpy()).all()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    relu, _ = _tiny("swin_tiny_relu")
    act = relu.layers[0].blocks[1].attn.core.act
    assert (act.act_name, act.norm_name, act.rel_pos) == ("relu", "token", "values")
    plain, _ = _tiny("swin_tiny")
    assert plain.layers[0].blocks[0].attn.core is None                        # Swin's own path, parity-tested
    ln, _ = _tiny("swin_tiny", attn_act="relu", attn_norm="layernorm")
    assert ln.layers[0].blocks[0].attn.core.act.norm_name == "layernorm"


def test_macs_count_window_products():
    cfg = convattn.get_model_cfg("swin_tiny")
    net = convattn.create_model("swin_tiny", depths=(2, 2, 1, 1), embed_dim=16, num_heads=(1, 2, 2, 4),
                                window_size=4, img_size=64)
    relu, _ = _tiny("swin_tiny_relu")
    soft = count_macs(net, (1, 3, 64, 64))
    rel = count_macs(relu, (1, 3, 64, 64))
    # both count q k^T and attn v: 2 * tokens * window tokens * width per block
    want = sum(2 * n * min(16, n) * c * d for n, c, d in ((256, 16, 2), (64, 32, 2), (16, 64, 1), (4, 128, 1)))
    assert soft["extra"] == rel["extra"] == want
    assert cfg["top1"] == 81.3


@pytest.mark.parametrize("kwargs,match", [
    ({"attn_act": "tanh"}, "unknown attention activation"),
    ({"attn": "global"}, "unknown attention 'global'"),
    ({"num_heads": (1, 2, 2, 5)}, "not divisible by num_heads"),
    ({"img_size": 72}, "do not tile"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny("swin_tiny_relu", **kwargs)


def test_acmix_rejects_attention_options():
    with pytest.raises(ValueError, match="ACmix window attention takes no"):
        _tiny("acmix_swin_tiny", attn_act="relu")
