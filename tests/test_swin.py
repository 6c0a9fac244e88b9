"""Swin and ACmix-Swin: parity with the official ACmix Swin code, buffers, checkpoint conversion, sizes, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

import convattn
from conftest import REPO, require_reference
from convattn.convert import load_official_state, read_official_state
from convattn.layers.window_attention import (cyclic_shift, relative_position_index, shifted_window_mask,
                                              window_partition, window_reverse)
from convattn.models.swin import BasicLayer, SwinTransformerBlock
from convattn.models import small_instance_kwargs
from parity import load_fixture, run_parity, tolerance

NET_KWARGS = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
# trainable parameters at 1000 classes; ACmix values equal the official SwinTransformer_acmix (README: 30 / 51 M)
SWIN_PARAMS_M = {"swin_tiny": 28.29, "swin_small": 49.61, "acmix_swin_tiny": 28.65, "acmix_swin_small": 50.35}


@pytest.mark.parametrize("name,build", [
    ("acmix_swin_block_shift.npz", lambda: SwinTransformerBlock(96, (14, 14), 3, window_size=7, shift_size=3, acmix=True)),
    ("acmix_swin_stage.npz", lambda: BasicLayer(96, (14, 14), 2, 3, 7, downsample=True, acmix=True)),
], ids=["block_shift", "stage"])
def test_acmix_swin_modules_match_official(ms_mode, name, build):
    got, ref, tol = run_parity(build(), name, rules="acmix_swin")
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{name} [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


def test_acmix_swin_net_matches_official(ms_mode):
    net = convattn.create_model("acmix_swin_tiny", **NET_KWARGS)
    got, ref, tol = run_parity(net, "acmix_swin_net_e32_d2222.npz", rules=None)
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"acmix_swin e32 d2222 [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


def test_recomputed_buffers_equal_official():
    _, _, state = load_fixture("acmix_swin_stage.npz")
    idx = relative_position_index(7, 7)
    np.testing.assert_array_equal(idx, state["blocks.0.attn.relative_position_index"])
    np.testing.assert_array_equal(idx, state["blocks.1.attn.relative_position_index"])
    _, _, blk = load_fixture("acmix_swin_block_shift.npz")
    np.testing.assert_array_equal(shifted_window_mask(14, 14, 7, 3), blk["attn_mask"])
    assert "blocks.0.attn_mask" not in state  # unshifted block: no mask upstream, none here
    assert SwinTransformerBlock(96, (14, 14), 3, 7, 0, acmix=True).attn_mask is None


def test_official_swin_trainer_checkpoint_converts():
    """A genuine torch-saved {'model': ..., 'epoch', 'max_accuracy'} file loads through the converter and matches."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    pth = require_reference("pth/acmix_swin_block_shift_model.pth")
    state = read_official_state(str(pth))
    blk = SwinTransformerBlock(96, (14, 14), 3, window_size=7, shift_size=3, acmix=True)
    info = load_official_state(blk, state, rules="acmix_swin")
    assert sorted(info["dropped"]) == ["attn.relative_position_index", "attn_mask"]
    inp, ref, _ = load_fixture("acmix_swin_block_shift.npz")
    blk.set_train(False)
    got = blk(ms.Tensor(inp)).asnumpy()
    assert float(np.abs(got - ref).max()) <= tolerance(ref)


def test_convert_cli_writes_loadable_acmix_swin(tmp_path):
    """``python -m convattn.convert`` on the official network state; the .ckpt reproduces the official output."""
    src = require_reference("acmix_swin_net_e32_d2222.npz")
    dst = tmp_path / "acmix_swin.ckpt"
    cmd = [sys.executable, "-m", "convattn.convert", "--model", "acmix_swin_tiny",
           "--model_kwargs", json.dumps(NET_KWARGS), str(src), str(dst)]
    env = {"PYTHONPATH": str(REPO / "src"), "GLOG_v": "3", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("acmix_swin_tiny", pretrained=str(dst), **NET_KWARGS)
    net.set_train(False)
    with np.load(src) as f:
        inp, ref = f["input"], f["output"]
    got = net(ms.Tensor(inp)).asnumpy()
    assert float(np.abs(got - ref).max()) <= tolerance(ref)


def test_window_helpers_roundtrip():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = np.random.randn(2, 8, 12, 3).astype(np.float32)
    t = ms.Tensor(x)
    np.testing.assert_array_equal(cyclic_shift(t, -3, 5).asnumpy(), np.roll(x, (-3, 5), axis=(1, 2)))
    w = window_partition(t, 4)
    assert tuple(w.shape) == (12, 4, 4, 3)
    np.testing.assert_array_equal(w.asnumpy()[1], x[0, 0:4, 4:8])
    np.testing.assert_array_equal(window_reverse(w, 4, 8, 12).asnumpy(), x)


def test_window_token_gather_equals_shift_and_partition(ms_mode):
    """The plain Swin block gathers its (shifted) windows with one token permutation; it must equal the shift +
    partition / reverse + shift-back formulation (the one the ACmix fixtures check), forward and gradient."""
    from mindspore import nn, ops
    from convattn.layers.window_attention import window_token_order

    x = np.random.default_rng(0).standard_normal((2, 8, 12, 3)).astype(np.float32)
    order = window_token_order(8, 12, 4, 2)
    want = window_partition(ms.Tensor(np.roll(x, (-2, -2), axis=(1, 2))), 4).asnumpy().reshape(2, -1, 3)
    np.testing.assert_array_equal(x.reshape(2, -1, 3)[:, order], want)

    class MapForm(nn.Cell):  # the block body written with the map path (cyclic shift + partition/reverse)
        def __init__(self, blk):
            super().__init__()
            self.blk = blk

        def construct(self, t):
            blk = self.blk
            b, n, c = t.shape
            h, w = blk.input_resolution
            y = cyclic_shift(blk.norm1(t).reshape(b, h, w, c), -blk.shift_size, -blk.shift_size)
            y = cyclic_shift(blk.attn(y, blk.attn_mask), blk.shift_size, blk.shift_size).reshape(b, n, c)
            y = t + y
            return y + blk.mlp(blk.norm2(y))

    ms.set_seed(0)
    blk = SwinTransformerBlock(16, (14, 14), 2, window_size=7, shift_size=3)
    assert blk.windowed
    t = ms.Tensor(np.random.default_rng(1).standard_normal((2, 196, 16)).astype(np.float32))
    ref = MapForm(blk)
    np.testing.assert_allclose(blk(t).asnumpy(), ref(t).asnumpy(), rtol=0, atol=1e-5)
    sens = ms.Tensor(np.random.default_rng(2).standard_normal((2, 196, 16)).astype(np.float32))
    grad = ops.GradOperation(get_all=True, sens_param=True)
    np.testing.assert_allclose(grad(blk)(t, sens)[0].asnumpy(), grad(ref)(t, sens)[0].asnumpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SWIN_PARAMS_M))
def test_swin_parameter_counts(name):
    net = convattn.create_model(name)
    n = sum(p.size for p in net.trainable_params()) / 1e6
    assert round(n, 2) == SWIN_PARAMS_M[name], f"{name}: {n:.4f} M"


def test_swin_defaults_small_instance_and_features():
    cfg = convattn.get_model_cfg("acmix_swin_tiny")
    assert cfg["convert_rules"] == "acmix_swin" and cfg["top1"] == 81.9
    ms.set_context(mode=ms.PYNATIVE_MODE)
    small, size = small_instance_kwargs("acmix_swin_tiny")  # the small instance of every Swin
    net = convattn.create_model("acmix_swin_small", num_classes=10, **small)
    assert net.layers[0].blocks[1].shift_size == 2 and net.layers[2].blocks[0].window_size == 4
    net.set_train(False)
    x = ms.Tensor(np.random.randn(1, *size).astype(np.float32))
    assert tuple(net(x).shape) == (1, 10)
    feats = convattn.create_model("swin_tiny", features_only=True, **small)
    feats.set_train(False)
    assert [tuple(f.shape) for f in feats(x)] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]
    big = convattn.create_model("acmix_swin_small", depths=(1, 1, 1, 1))
    assert big.layers[3].blocks[0].drop_path.drop_prob == pytest.approx(0.3)


def test_swin_rejects_bad_input():
    with pytest.raises(ValueError, match="use img_size=224"):
        convattn.create_model("acmix_swin_tiny", img_size=200, depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        convattn.create_model("acmix_swin_tiny", embed_dim=32, num_heads=(3, 6, 12, 24), depths=(1, 1, 1, 1))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("swin_tiny", img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                window_size=4)
    with pytest.raises(ValueError, match="built for 64x64"):
        net(ms.Tensor(np.zeros((1, 3, 96, 96), np.float32)))
