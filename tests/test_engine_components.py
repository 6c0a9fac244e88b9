"""Losses, schedules, parameter groups, mixup, checkpoint atomicity / keep-last-N, curves, launcher usage."""
import os
import subprocess

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.data import Mixup, smooth_one_hot
from convattn.engine import CheckpointManager, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, cosine_lr
from convattn.engine import atomic_save_checkpoint, find_latest, param_groups
from convattn.engine.feedback import plot_curves
from engine_helpers import REPO


def _ce_numpy(logits, target):
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return float((-(target * logp).sum(-1)).mean())


@pytest.mark.parametrize("mode", ["standard", "wrong_classes"])
def test_label_smoothing_forms(mode):
    rng = np.random.RandomState(0)
    logits = rng.randn(6, 5).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    eps, C = 0.1, 5
    t = smooth_one_hot(labels, C, eps, mode)
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
    if mode == "standard":
        assert np.isclose(t[0, 0], 1 - eps + eps / C) and np.isclose(t[0, 1], eps / C)
    else:
        assert np.isclose(t[0, 0], 1 - eps) and np.isclose(t[0, 1], eps / (C - 1))
    hard = LabelSmoothingCrossEntropy(C, eps, mode)(ms.Tensor(logits), ms.Tensor(labels.astype(np.int32)))
    soft = SoftTargetCrossEntropy()(ms.Tensor(logits), ms.Tensor(t))
    ref = _ce_numpy(logits.astype(np.float64), t)
    assert abs(float(hard.asnumpy()) - ref) < 1e-5 and abs(float(soft.asnumpy()) - ref) < 1e-5


def test_standard_and_wrong_class_smoothing_differ():
    a, b = smooth_one_hot([1], 10, 0.1, "standard"), smooth_one_hot([1], 10, 0.1, "wrong_classes")
    assert a[0, 1] > b[0, 1] and a[0, 0] < b[0, 0]
    with pytest.raises(ValueError, match="labels must be in"):
        smooth_one_hot([10], 10, 0.1)


def test_cosine_schedule_values():
    lrs = cosine_lr(1e-3, 1e-5, steps_per_epoch=10, epochs=10, warmup_epochs=2, warmup_lr=1e-6, cooldown_epochs=1)
    assert len(lrs) == 100
    assert np.isclose(lrs[0], 1e-6) and np.isclose(lrs[10], 1e-6 + (1e-3 - 1e-6) * 0.5, rtol=1e-5)
    assert np.isclose(lrs[20], 1e-3)  # end of warm-up = peak
    assert np.all(np.diff(lrs[:20]) > 0) and np.all(np.diff(lrs[20:90]) <= 0)
    mid = 20 + 35  # half-way through the 70 decay steps
    assert np.isclose(lrs[mid], 1e-5 + 0.5 * (1e-3 - 1e-5), rtol=1e-4)
    assert np.allclose(lrs[90:], 1e-5)


def test_no_weight_decay_for_norms_biases_layer_scale():
    import convattn
    net = convattn.create_model("van_b0", num_classes=10, depths=(1, 1, 1, 1))
    groups = param_groups(net.trainable_params(), 0.05)
    decay = {p.name for p in groups[0]["params"]}
    skip = {p.name for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert any("layer_scale" in n for n in skip) and any(n.endswith("bias") for n in skip)
    assert any(n.endswith("gamma") for n in skip)  # BatchNorm / LayerNorm scales
    assert not any("layer_scale" in n or n.endswith(("bias", "gamma", "beta")) for n in decay)
    assert "head.weight" in decay and any("proj.weight" in n for n in decay)


def test_mixup_cutmix_targets_sum_to_one():
    rng = np.random.RandomState(0)
    x = rng.rand(8, 3, 16, 16).astype(np.float32)
    y = np.arange(8) % 10
    for alpha in ((0.8, 0.0), (0.0, 1.0)):
        xm, t = Mixup(*alpha, num_classes=10, smoothing=0.1)(x, y, np.random.RandomState(0))
        np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-5)
        assert not np.array_equal(xm, x) and xm.shape == x.shape
        assert (t > 0.01 + 1e-6).sum(-1).max() == 2  # two classes mixed (0.01 = the smoothing floor)
    # the same seed replays the same mixing (what exact resume relies on)
    a = Mixup(0.8, 1.0, num_classes=10)(x, y, np.random.RandomState(5))
    b = Mixup(0.8, 1.0, num_classes=10)(x, y, np.random.RandomState(5))
    np.testing.assert_array_equal(a[0], b[0])


def _params(value):
    return [{"name": "w", "data": ms.Tensor(np.full((4,), value, np.float32))}]


def test_checkpoint_keep_last_n_and_best(tmp_path):
    mgr = CheckpointManager(str(tmp_path), "m", keep_max=2)
    for epoch in range(1, 5):
        mgr.save(_params(epoch), epoch, 10, {"train.epoch": epoch})
    mgr.save_best(_params(9), {"train.epoch": 3})
    names = sorted(os.listdir(tmp_path))
    assert names == ["m-3_10.ckpt", "m-4_10.ckpt", "m_best.ckpt"]
    assert find_latest(str(tmp_path), "m") == str(tmp_path / "m-4_10.ckpt")
    mgr.save(_params(5), 10, 3, {})  # epoch 10 sorts after epoch 4 numerically, not as text
    assert find_latest(str(tmp_path), "m").endswith("m-10_3.ckpt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m-1_1.ckpt"
    atomic_save_checkpoint(_params(1.0), str(path))
    good = path.read_bytes()

    def crash(save_obj, ckpt_file_name, **kw):
        with open(ckpt_file_name, "wb") as f:
            f.write(b"\x00partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save_checkpoint(_params(2.0), str(path))
    assert path.read_bytes() == good  # the previous good file is untouched
    assert os.listdir(tmp_path) == ["m-1_1.ckpt"]  # and no temp file is left behind
    monkeypatch.undo()
    np.testing.assert_array_equal(ms.load_checkpoint(str(path))["w"].asnumpy(), np.ones(4, np.float32))


def test_curves_png(tmp_path):
    from PIL import Image
    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 1.5 / e, "val_top1": 50 + 10 * e, "val_top5": 90}
            for e in range(1, 5)]
    path = plot_curves(rows, str(tmp_path / "c.png"), "t")
    img = np.asarray(Image.open(path))
    assert img.shape == (420, 900, 3) and (img != 255).any(-1).sum() > 2000


@pytest.mark.parametrize("script, nargs", [("run_standalone_train.sh", 3), ("run_distribute_train.sh", 4),
                                           ("run_distribute_train_ascend.sh", 3), ("run_eval.sh", 3)])
def test_launchers_usage_and_path_checks(script, nargs, tmp_path):
    r = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.startswith(f"Usage: bash scripts/{script}")
    r = subprocess.run(["bash", str(REPO / "scripts" / script)] + [str(tmp_path / "missing")] * nargs,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "does not exist" in r.stdout + r.stderr  # the distributed launchers use stderr
