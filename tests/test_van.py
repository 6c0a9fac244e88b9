"""VAN: parity with the official PyTorch code, parameter counts, features, bad input."""
import numpy as np
import pytest
import mindspore as ms

import convattn
from convattn.layers import LKA, LKAAttention
from convattn.models.van import Block
from parity import run_parity

# Trainable parameters of the official models/van.py at 1000 classes (model-facts §5.3).
OFFICIAL_PARAMS_M = {"van_b0": 4.11, "van_b1": 13.86, "van_b2": 26.58, "van_b3": 44.77,
                     "van_b4": 60.28, "van_b5": 89.97, "van_b6": 199.83}


@pytest.mark.parametrize("name,build", [
    ("van_lka.npz", lambda: LKA(64)),
    ("van_attention.npz", lambda: LKAAttention(64)),
    ("van_block.npz", lambda: Block(64, mlp_ratio=8.0)),
])
def test_van_modules_match_official(ms_mode, name, build):
    got, ref, tol = run_parity(build(), name, rules="van")
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{name} [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


def test_van_b0_matches_official(ms_mode):
    net = convattn.create_model("van_b0")
    got, ref, tol = run_parity(net, "van_b0.npz", rules="van")
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"van_b0 [{ms_mode}]: max|ours - official| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS_M))
def test_van_parameter_counts(name):
    net = convattn.create_model(name)
    n = sum(p.size for p in net.trainable_params()) / 1e6
    assert round(n, 2) == OFFICIAL_PARAMS_M[name], f"{name}: {n:.4f} M trainable parameters"


def test_van_defaults_and_cfg():
    cfg = convattn.get_model_cfg("van_b2")
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["crop_pct"] == 0.9 and cfg["interpolation"] == "bicubic"
    rates = {n: convattn.create_model(n, depths=(1, 1, 1, 1)) for n in ("van_b0", "van_b3", "van_b6")}
    # official drop-path defaults: the last block of each model gets the full rate
    assert rates["van_b0"].block4[0].drop_path.drop_prob == pytest.approx(0.1)
    assert rates["van_b3"].block4[0].drop_path.drop_prob == pytest.approx(0.2)
    assert rates["van_b6"].block4[0].drop_path.drop_prob == pytest.approx(0.3)
    net = convattn.create_model("van_b0", drop_path_rate=0.0, depths=(1, 1, 1, 1))
    assert isinstance(net.block4[0].drop_path, ms.nn.Identity)


def test_van_features_only():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model("van_b0", features_only=True)
    net.set_train(False)
    feats = net(ms.Tensor(np.random.randn(1, 3, 64, 96).astype(np.float32)))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 160, 4, 6), (1, 256, 2, 3)]
    assert [i["reduction"] for i in net.feature_info] == [4, 8, 16, 32]
    sub = convattn.create_model("van_b0", features_only=True, out_indices=(1, 3))
    sub.set_train(False)
    assert [f.shape[1] for f in sub(ms.Tensor(np.zeros((1, 3, 64, 64), np.float32)))] == [64, 256]
    assert not any(p.name.startswith("head.") for p in net.get_parameters())


@pytest.mark.parametrize("shape,match", [((1, 4, 32, 32), "3 input channels.*in_chans=4"), ((3, 32, 32), "NCHW"),
                                         ((1, 32, 32, 3), r"looks like NHWC.*transpose\(0, 3, 1, 2\)")])
def test_van_rejects_bad_input(ms_mode, shape, match):
    net = convattn.create_model("van_b0", depths=(1, 1, 1, 1))
    net.set_train(False)
    with pytest.raises((ValueError, RuntimeError), match=match):
        net(ms.Tensor(np.zeros(shape, np.float32)))
