"""Self-attention as dynamic convolutions: the paper's explicit pipeline equals the library attention;
activations, normalisations, depth-wise attention, window masks, MAC accounting, bad arguments."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, ops

import convattn  # noqa: F401
from convattn.layers import AttentionActivation, DepthwiseAttentionCore, DynamicAttention, DynamicAttentionCore

DIM, HEADS, TOKENS, BATCH = 24, 3, 10, 2


def _params(net):
    return {p.name: p for p in net.get_parameters()}


def _randomise(net, seed=0):
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        if "moving_variance" in p.name:
            p.set_data(Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        else:
            p.set_data(Tensor(rng.normal(0, 0.5, p.shape).astype(np.float32)))
    return net


def _conv1x1(x, weight, bias=None, groups=1):
    """A 1x1 convolution of an NCHW map with an explicit kernel (out, in/groups, 1, 1)."""
    y = ops.conv2d(x, weight, groups=groups)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def _explicit_pipeline(x, net, act, scale, tau=1.0, bias=None):
    """One image at a time, tokens laid out as a 1 x N feature map (C, 1, N):
    static 1x1 conv -> per head: dynamic 1x1 conv whose N kernels are the keys -> activation ->
    dynamic 1x1 conv whose C_h kernels are the values -> concat heads -> static 1x1 conv."""
    p = _params(net)
    w_qkv = p["qkv.weight"].value().reshape(3 * DIM, DIM, 1, 1)
    w_proj = p["proj.weight"].value().reshape(DIM, DIM, 1, 1)
    ch = DIM // HEADS
    outs = []
    for b in range(x.shape[0]):
        fmap = x[b].transpose(1, 0).reshape(1, DIM, 1, TOKENS)                    # (1, C, 1, N)
        qkv = _conv1x1(fmap, w_qkv, p["qkv.bias"].value())                        # static conv
        heads = []
        for h in range(HEADS):
            q = qkv[:, h * ch:(h + 1) * ch]                                       # (1, C_h, 1, N) query map
            k = qkv[:, DIM + h * ch:DIM + (h + 1) * ch]
            v = qkv[:, 2 * DIM + h * ch:2 * DIM + (h + 1) * ch]
            key_bank = k[0, :, 0, :].transpose(1, 0).reshape(TOKENS, ch, 1, 1)   # N kernels C_h -> 1
            logits = _conv1x1(q, key_bank) * scale / tau                          # (1, N_keys, 1, N_queries)
            a = act(logits, h)
            if bias is not None:                                                   # o = (act(.) + p) v
                a = a + bias[h].transpose(1, 0).reshape(1, TOKENS, 1, TOKENS)
            value_bank = v[0, :, 0, :].reshape(ch, TOKENS, 1, 1)                  # C_h kernels N -> 1
            heads.append(_conv1x1(a, value_bank))                                  # (1, C_h, 1, N)
        o = _conv1x1(ops.concat(heads, 1), w_proj, p["proj.bias"].value())      # static conv
        outs.append(o[0, :, 0, :].transpose(1, 0))
    return ops.stack(tuple(outs))


def _softmax(logits, h):
    return ops.softmax(logits, axis=1)                  # over the key channels


def _relu_token(logits, h):
    return ops.relu(logits) / logits.shape[1]


def _make_relu_ln(net):
    g = _params(net)["core.act.gamma"].value().reshape(-1)
    b = _params(net)["core.act.beta"].value().reshape(-1)

    def act(logits, h):
        r = ops.relu(logits)
        mu = r.mean(1, keep_dims=True)
        var = ((r - mu) ** 2).mean(1, keep_dims=True)
        return (r - mu) / ops.sqrt(var + 1e-5) * g[h] + b[h]
    return act


def _make_relu_bn(net):
    p = _params(net)
    mean, var = p["core.act.bn.moving_mean"].value(), p["core.act.bn.moving_variance"].value()
    g, b = p["core.act.bn.gamma"].value(), p["core.act.bn.beta"].value()

    def act(logits, h):
        r = ops.relu(logits)
        return (r - mean[h]) / ops.sqrt(var[h] + 1e-5) * g[h] + b[h]
    return act


@pytest.mark.parametrize("case", ["softmax", "softmax_tau", "relu_token", "relu_token_relpos", "relu_layernorm",
                                  "relu_batchnorm"])
def test_attention_equals_explicit_dynamic_conv_pipeline(case):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    tau = 2.0 if case == "softmax_tau" else 1.0
    act_name = "softmax" if case.startswith("softmax") else "relu"
    norm = {"relu_layernorm": "layernorm", "relu_batchnorm": "batchnorm"}.get(case, None)
    net = _randomise(DynamicAttention(DIM, HEADS, attn_act=act_name, attn_norm=norm, tau=tau))
    net.set_train(False)
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(BATCH, TOKENS, DIM)).astype(np.float32))
    bias = Tensor(rng.normal(0, 0.1, (HEADS, TOKENS, TOKENS)).astype(np.float32)) if "relpos" in case else None
    act = {"softmax": _softmax, "softmax_tau": _softmax, "relu_token": _relu_token, "relu_token_relpos": _relu_token,
           "relu_layernorm": _make_relu_ln(net) if norm == "layernorm" else None,
           "relu_batchnorm": _make_relu_bn(net) if norm == "batchnorm" else None}[case]
    want = _explicit_pipeline(x, net, act, (DIM // HEADS) ** -0.5, tau, bias).asnumpy()
    got = net(x, bias).asnumpy()
    err = float(np.abs(got - want).max())
    assert err <= 2e-6 * max(1.0, float(np.abs(want).max())), f"{case}: max|library - pipeline| = {err:.3g}"


def test_depthwise_attention_is_averaged_key_kernel_applied_depthwise():
    """Depth-wise self-attention = a depth-wise 1x1 conv of the query map with the mean of the key kernels."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = _randomise(DynamicAttention(DIM, HEADS, attn="depthwise"), seed=3)
    net.set_train(False)
    x = Tensor(np.random.default_rng(4).normal(size=(BATCH, TOKENS, DIM)).astype(np.float32))
    p = _params(net)
    assert "qk.weight" in p and not any("qkv" in n for n in p)      # the value bank is gone
    outs = []
    for b in range(BATCH):
        fmap = x[b].transpose(1, 0).reshape(1, DIM, 1, TOKENS)
        qk = _conv1x1(fmap, p["qk.weight"].value().reshape(2 * DIM, DIM, 1, 1), p["qk.bias"].value())
        q, k = qk[:, :DIM], qk[:, DIM:]
        kernel = k.mean(3).reshape(DIM, 1, 1, 1)                      # average the N selected kernels
        o = _conv1x1(q, kernel, groups=DIM)                            # element-wise: channels unchanged
        o = _conv1x1(o, p["proj.weight"].value().reshape(DIM, DIM, 1, 1), p["proj.bias"].value())
        outs.append(o[0, :, 0, :].transpose(1, 0))
    want = ops.stack(tuple(outs)).asnumpy()
    got = net(x).asnumpy()
    assert np.abs(got - want).max() <= 2e-6 * max(1.0, np.abs(want).max())


def _swin_like_mask():
    """Two windows of 4 tokens; in window 1 tokens {0,1} and {2,3} belong to different shifted regions."""
    mask = np.zeros((2, 4, 4), np.float32)
    region = np.array([0, 0, 1, 1])
    mask[1] = np.where(region[:, None] == region[None, :], 0.0, -100.0)
    return mask


def test_window_mask_and_relative_position_for_cores():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(5)
    b_, h, n, c = 4, 2, 4, 3                                      # 2 images x 2 windows
    q, k, v = (rng.normal(size=(b_, h, n, c)).astype(np.float32) for _ in range(3))
    p = rng.normal(0, 0.3, (h, n, n)).astype(np.float32)
    mask = _swin_like_mask()
    keep = np.tile((mask > -1)[None].astype(np.float32), (2, 1, 1, 1)).reshape(b_, 1, n, n)
    logits = np.einsum("bhnc,bhmc->bhnm", q, k) * c ** -0.5

    # softmax (Swin): bias and mask added to the logits
    soft = DynamicAttentionCore(h, c, "softmax")
    z = logits + p[None] + np.tile(mask[None], (2, 1, 1, 1)).reshape(b_, 1, n, n)
    a = np.exp(z - z.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    got = soft(Tensor(q), Tensor(k), Tensor(v), Tensor(p), Tensor(mask)).asnumpy()
    np.testing.assert_allclose(got, a @ v, rtol=1e-5, atol=1e-5)

    # relu / N with the position term on the values; masked keys get exactly zero weight
    relu = DynamicAttentionCore(h, c, "relu", "token", rel_pos="values")
    a = (np.maximum(logits, 0) / keep.sum(-1, keepdims=True) + p[None]) * keep
    got = relu(Tensor(q), Tensor(k), Tensor(v), Tensor(p), Tensor(mask)).asnumpy()
    np.testing.assert_allclose(got, a @ v, rtol=1e-5, atol=1e-5)

    # depth-wise: per query the mean of the keys of its own region, plus sum_j p_ij k_j over those keys
    dw = DepthwiseAttentionCore(h, c)
    k_bar = (keep / keep.sum(-1, keepdims=True)) @ k
    want = q * k_bar + (p[None] * keep) @ k
    got = dw(Tensor(q), Tensor(k), Tensor(p), Tensor(mask)).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got = dw(Tensor(q), Tensor(k)).asnumpy()
    np.testing.assert_allclose(got, q * k.mean(2, keepdims=True), rtol=1e-5, atol=1e-6)


def test_norm_first_and_graph_mode_agree(ms_mode):
    rng = np.random.default_rng(6)
    logits = Tensor(rng.normal(size=(2, HEADS, 5, 5)).astype(np.float32))
    act = AttentionActivation("relu", "layernorm", HEADS, norm_first=True)
    x = logits.asnumpy()
    ln = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(act(logits).asnumpy(), np.maximum(ln, 0), rtol=1e-5, atol=1e-6)


def test_attention_macs_counted():
    from convattn.bench.macs import count_macs
    net = DynamicAttention(DIM, HEADS)
    macs = count_macs(_Wrap(net), (BATCH, TOKENS, DIM))
    assert macs["extra"] == 2 * TOKENS * TOKENS * DIM                # q k^T and attn v
    assert macs["dense"] == TOKENS * DIM * 3 * DIM + TOKENS * DIM * DIM
    dw = count_macs(_Wrap(DynamicAttention(DIM, HEADS, attn="depthwise")), (BATCH, TOKENS, DIM))
    assert dw["extra"] == TOKENS * DIM + TOKENS * DIM                 # q * k_bar and the averaging
    assert dw["dense"] == TOKENS * DIM * 2 * DIM + TOKENS * DIM * DIM


class _Wrap(ms.nn.Cell):
    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def construct(self, x):
        return self.attn(x)


@pytest.mark.parametrize("kwargs,match", [
    ({"attn_act": "gelu"}, "unknown attention activation attn_act='gelu'"),
    ({"attn": "linear"}, "unknown attention 'linear'"),
    ({"attn_norm": "groupnorm", "attn_act": "relu"}, "unknown attention normalisation"),
    ({"attn_norm": "layernorm"}, "softmax already normalises"),
    ({"attn": "depthwise", "attn_act": "softmax"}, "depth-wise attention has no attention map"),
    ({"attn": "depthwise", "attn_norm": "batchnorm"}, "depth-wise attention has none"),
    ({"num_heads": 5}, "num_heads=5 does not divide the width dim=24"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"rel_pos": "keys"}, "unknown rel_pos"),
])
def test_bad_attention_arguments(kwargs, match):
    kw = {"num_heads": HEADS, **kwargs}
    with pytest.raises(ValueError, match=match):
        DynamicAttention(DIM, **kw)
