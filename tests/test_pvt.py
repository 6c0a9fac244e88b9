"""PVT v1 and ACmix-PVT (designed from the paper; no official code): sizes, names, Ascend form, bad input."""
import numpy as np
import pytest
import mindspore as ms

import convattn
from convattn.convert import load_official_state
from convattn.models.pvt import AttentionACmix

# trainable parameters at 1000 classes: PVT = whai362/PVT; ACmix-PVT = our design (README: 13 M / 25 M)
PVT_PARAMS_M = {"pvt_tiny": 13.23, "pvt_small": 24.49, "acmix_pvt_tiny": 13.40, "acmix_pvt_small": 24.82}
SMALL = dict(img_size=64, depths=(1, 1, 1, 1))


@pytest.mark.parametrize("name", sorted(PVT_PARAMS_M))
def test_pvt_parameter_counts(name):
    n = sum(p.size for p in convattn.create_model(name).trainable_params()) / 1e6
    assert round(n, 2) == PVT_PARAMS_M[name], f"{name}: {n:.4f} M"


def test_acmix_pvt_forward_both_modes(ms_mode):
    net = convattn.create_model("acmix_pvt_tiny", num_classes=10, **SMALL)
    net.set_train(False)
    out = net(ms.Tensor(np.random.randn(2, 3, 64, 64).astype(np.float32))).asnumpy()
    assert out.shape == (2, 10) and np.isfinite(out).all()


def test_acmix_pvt_official_names_and_design():
    net = convattn.create_model("acmix_pvt_small", **SMALL)
    names = {p.name for p in net.get_parameters()}
    assert {"patch_embed1.proj.weight", "pos_embed1", "pos_embed4", "cls_token", "block1.0.attn.q.weight",
            "block1.0.attn.kv.weight", "block1.0.attn.sr.weight", "block1.0.attn.norm.gamma", "block1.0.attn.fc.bias",
            "block1.0.attn.dep_conv.weight", "block4.0.attn.rate1", "head.weight"} <= names
    assert "block4.0.attn.sr.weight" not in names  # sr_ratio 1 in the last stage, as PVT
    attn = net.block4[0].attn
    assert isinstance(attn, AttentionACmix) and attn.n_cls == 1 and (attn.h, attn.w) == (2, 2)
    assert tuple(net.pos_embed4.shape) == (1, 5, 512)  # 2x2 tokens + class token
    assert "dep_conv.bias" not in " ".join(names)


def test_acmix_pvt_depthwise_form_equals_grouped():
    """The Ascend-legal network loads the grouped network's weights (a reshape) and gives the same logits."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    grouped = convattn.create_model("acmix_pvt_tiny", num_classes=10, depthwise_conv=False, **SMALL)
    rng = np.random.default_rng(0)
    for p in grouped.get_parameters():
        if p.name.endswith("dep_conv.weight"):
            p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.1))
    state = {p.name: p.asnumpy() for p in grouped.get_parameters()}
    dw = convattn.create_model("acmix_pvt_tiny", num_classes=10, depthwise_conv=True, **SMALL)
    load_official_state(dw, state, rules="acmix")
    grouped.set_train(False)
    dw.set_train(False)
    x = ms.Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    a, b = grouped(x).asnumpy(), dw(x).asnumpy()
    assert float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(a).max()))


def test_pvt_features_and_bad_input():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("pvt_tiny", features_only=True, **SMALL)
    net.set_train(False)
    feats = net(ms.Tensor(np.zeros((1, 3, 64, 64), np.float32)))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 320, 4, 4), (1, 512, 2, 2)]
    with pytest.raises(ValueError, match="multiple of"):
        convattn.create_model("acmix_pvt_tiny", img_size=100)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        convattn.create_model("acmix_pvt_tiny", num_heads=(3, 2, 5, 8), **SMALL)
    net = convattn.create_model("pvt_tiny", **SMALL)
    with pytest.raises(ValueError, match="built for 64x64"):
        net(ms.Tensor(np.zeros((1, 3, 96, 96), np.float32)))


def test_acmix_pvt_conv_path_reuses_sra_kv():
    """acmix_kv='shared': the conv path reads SRA's own k/v, each repeated over its sr x sr patch (no second kv)."""
    from mindspore import Tensor

    rng = np.random.default_rng(0)
    attn = AttentionACmix(16, 2, qkv_bias=True, sr_ratio=2, resolution=(4, 4))
    for p in attn.trainable_params():
        p.set_data(Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    attn.set_train(False)
    x = Tensor(rng.normal(size=(2, 16, 16)).astype(np.float32))
    q_t, kv_t = attn.project(x)
    kv = kv_t.asnumpy().reshape(2, 2, 2, 32).repeat(2, axis=1).repeat(2, axis=2).reshape(2, 16, 32)
    qkv = np.concatenate((q_t.asnumpy(), kv), -1).reshape(2, 16, 6, 8).transpose(0, 2, 3, 1)
    conv = attn.conv_path(Tensor(qkv), 4, 4).asnumpy().reshape(2, 16, 16).transpose(0, 2, 1)
    ref = attn.rate1.asnumpy() * attn.attend(q_t, kv_t).asnumpy() + attn.rate2.asnumpy() * conv
    got = attn(x).asnumpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    attn.acmix_kv = "full"          # the first version: kv applied again at full resolution -> another output
    assert not np.allclose(attn(x).asnumpy(), got, atol=1e-3)
    with pytest.raises(ValueError, match="multiple of sr_ratio"):
        AttentionACmix(16, 2, sr_ratio=4, resolution=(6, 6))
