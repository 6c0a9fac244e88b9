"""DeiT and its dynamic-convolution variants: registry, parameter counts, timm key names, a training step in
both modes for every attention kind, features, bad input."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

import convattn
from convattn.convert import load_official_state
from convattn.models import small_instance_kwargs

VARIANTS = ["deit_tiny", "deit_small", "deit_tiny_relu", "deit_small_relu", "deit_tiny_dw", "deit_small_dw"]
# timm deit_tiny_patch16_224 / deit_small_patch16_224 trainable parameters at 1000 classes
OFFICIAL_PARAMS_M = {"deit_tiny": 5.72, "deit_small": 22.05}


def _tiny(name, **kwargs):
    small, size = small_instance_kwargs(name, **kwargs)
    return convattn.create_model(name, num_classes=10, **small), size


def test_registered_with_cfgs():
    assert convattn.list_models("deit*") == sorted(VARIANTS)
    assert convattn.get_model_cfg("deit_tiny")["top1"] == 72.2
    assert convattn.get_model_cfg("deit_small")["top1"] == 79.8
    for name in VARIANTS:
        cfg = convattn.get_model_cfg(name)
        assert cfg["paper"] and small_instance_kwargs(name)[0] and cfg["first_conv"] == "patch_embed.proj"


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS_M))
def test_parameter_counts_match_timm(name):
    net = convattn.create_model(name)
    n = sum(p.size for p in net.trainable_params()) / 1e6
    assert round(n, 2) == OFFICIAL_PARAMS_M[name], f"{name}: {n:.4f} M"
    relu = convattn.create_model(name + "_relu")
    heads = net.blocks[0].attn.num_heads
    # + a relative-position table per block: (2*14 - 1)^2 patch offsets + 3 class-token entries, per head
    n_soft = sum(p.size for p in net.trainable_params())
    assert sum(p.size for p in relu.trainable_params()) == n_soft + 12 * 732 * heads
    relu = convattn.create_model(name + "_relu", rel_pos_embed=False)   # the first version
    assert sum(p.size for p in relu.trainable_params()) == sum(p.size for p in net.trainable_params())
    dw = convattn.create_model(name + "_dw")
    dim = net.embed_dim
    # no value bank: each block loses dim x dim weights and dim biases
    assert sum(p.size for p in net.trainable_params()) - sum(p.size for p in dw.trainable_params()) == 12 * (dim * dim + dim)


def test_timm_state_dict_loads_by_generic_names():
    """A state dict keyed like timm's VisionTransformer loads completely through the 'deit' rules."""
    net, _ = _tiny("deit_tiny")
    dim, hidden, depth = 48, 192, 2
    rng = np.random.default_rng(0)
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, 5, dim), "patch_embed.proj.weight": (dim, 3, 16, 16),
              "patch_embed.proj.bias": (dim,), "norm.weight": (dim,), "norm.bias": (dim,),
              "head.weight": (10, dim), "head.bias": (10,)}
    for i in range(depth):
        for key, shape in {"norm1.weight": (dim,), "norm1.bias": (dim,), "attn.qkv.weight": (3 * dim, dim),
                           "attn.qkv.bias": (3 * dim,), "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
                           "norm2.weight": (dim,), "norm2.bias": (dim,), "mlp.fc1.weight": (hidden, dim),
                           "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (dim, hidden), "mlp.fc2.bias": (dim,)}.items():
            shapes[f"blocks.{i}.{key}"] = shape
    state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    load_official_state(net, state, rules="deit")
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    np.testing.assert_array_equal(params["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"])
    np.testing.assert_array_equal(params["blocks.0.norm1.gamma"], state["blocks.0.norm1.weight"])
    np.testing.assert_array_equal(params["pos_embed"], state["pos_embed"])
    assert len(params) == len(state)


@pytest.mark.parametrize("name", ["deit_tiny", "deit_tiny_relu", "deit_tiny_dw"])
def test_train_step_every_attention_kind(ms_mode, name):
    ms.set_seed(0)
    net, size = _tiny(name)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=1e-3)

    def forward(x, y):
        return loss_fn(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)

    @ms.jit
    def step_graph(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss, grads

    def step_pynative(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss, grads

    step = step_graph if ms_mode == "graph" else step_pynative
    net.set_train(True)
    x = Tensor(np.random.default_rng(0).normal(size=(4,) + tuple(size)).astype(np.float32))
    y = Tensor(np.array([0, 1, 2, 3], np.int32))
    loss0, grads = step(x, y)
    assert np.isfinite(loss0.asnumpy())
    names = [p.name for p in opt.parameters]
    g = {n: float(np.abs(gr.asnumpy()).max()) for n, gr in zip(names, grads)}
    qk = "blocks.0.attn.qk.weight" if name.endswith("_dw") else "blocks.0.attn.qkv.weight"
    assert g[qk] > 0 and g["pos_embed"] > 0 and g["cls_token"] > 0
    for _ in range(3):
        loss, _ = step(x, y)
    assert float(loss.asnumpy()) < float(loss0.asnumpy())


def test_create_model_selects_attention():
    net = convattn.create_model("deit_tiny", attn_act="relu", attn_norm="layernorm", tau=2.0, depth=1)
    act = net.blocks[0].attn.core.act
    assert (act.act_name, act.norm_name, act.tau, act.rel_pos) == ("relu", "layernorm", 2.0, "values")
    dw = convattn.create_model("deit_tiny", attn="depthwise", depth=1)
    assert type(dw.blocks[0].attn.core).__name__ == "DepthwiseAttentionCore"
    relu = convattn.create_model("deit_small_relu", depth=1)
    assert relu.blocks[0].attn.core.act.norm_name == "token"


def test_features_only():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("deit_tiny", features_only=True, out_indices=(0, 1), depth=2, embed_dim=48, img_size=64)
    net.set_train(False)
    feats = net(Tensor(np.zeros((1, 3, 64, 64), np.float32)))
    assert [tuple(f.shape) for f in feats] == [(1, 48, 4, 4), (1, 48, 4, 4)]
    assert not any(p.name.startswith("head.") for p in net.get_parameters())


@pytest.mark.parametrize("kwargs,match", [
    ({"img_size": 40}, "img_size=40 is not a multiple of patch_size=16"),
    ({"num_heads": 5}, "num_heads=5 does not divide the width dim=48"),
    ({"attn_act": "sigmoid"}, "unknown attention activation"),
    ({"attn": "window"}, "unknown attention 'window'"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny("deit_tiny", **kwargs)


@pytest.mark.parametrize("shape,match", [((1, 3, 48, 48), "built for img_size=\\(32, 32\\)"),
                                         ((1, 4, 32, 32), "3 input channels")])
def test_bad_input(ms_mode, shape, match):
    net, _ = _tiny("deit_tiny")
    net.set_train(False)
    with pytest.raises((ValueError, RuntimeError), match=match):
        net(Tensor(np.zeros(shape, np.float32)))


def test_relative_position_embedding():
    """Index layout (2-D patch offsets + 3 class-token entries) and where the term enters: softmax adds it to the
    logits, ReLU (no softmax) to the normalised weights, o = (relu(q k^T s) / N + p) v."""
    from convattn.layers.dynamic_attention import DynamicAttention, token_relative_position_index

    idx = token_relative_position_index(2, 2)
    assert idx.shape == (5, 5) and idx[0, 0] == 11 and set(idx[0, 1:]) == {9} and set(idx[1:, 0]) == {10}
    assert idx[1, 1] == idx[4, 4] == 4 and idx[1, 4] == 0 and idx[4, 1] == 8     # (dy, dx) = (0,0), (-1,-1), (1,1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    for act, mode in (("relu", "values"), ("softmax", "logits")):
        att = DynamicAttention(8, 2, attn_act=act, rel_pos_grid=(2, 2))
        att.relative_position_bias_table.set_data(Tensor(rng.normal(size=(12, 2)).astype(np.float32)))
        assert att.core.act.rel_pos == mode
        w_qkv, b_qkv = att.qkv.weight.asnumpy(), att.qkv.bias.asnumpy()
        qkv = (x @ w_qkv.T + b_qkv).reshape(2, 5, 3, 2, 4).transpose(2, 0, 3, 1, 4)
        logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * 4 ** -0.5
        p = att.relative_position_bias_table.asnumpy()[idx].transpose(2, 0, 1)[None]
        if act == "relu":
            a = np.maximum(logits, 0) / 5 + p
        else:
            e = np.exp(logits + p - (logits + p).max(-1, keepdims=True))
            a = e / e.sum(-1, keepdims=True)
        o = (a @ qkv[2]).transpose(0, 2, 1, 3).reshape(2, 5, 8)
        ref = o @ att.proj.weight.asnumpy().T + att.proj.bias.asnumpy()
        np.testing.assert_allclose(att(Tensor(x)).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    net, _ = _tiny("deit_tiny_relu")
    assert net.rel_pos_embed and net.blocks[0].attn.relative_position_bias_table.shape == (3 * 3 + 3, 3)
    net, _ = _tiny("deit_tiny", rel_pos_embed=True)           # the like-for-like softmax baseline
    assert net.blocks[0].attn.core.act.rel_pos == "logits" and net.blocks[1].attn.rel_pos_grid == (2, 2)
    assert not any("relative_position" in p.name for p in _tiny("deit_tiny")[0].get_parameters())
