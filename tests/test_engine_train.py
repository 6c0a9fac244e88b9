"""End-to-end training in subprocesses: loss falls, eval script, NaN stop, SIGKILL + --resume auto."""
import csv
import os
import signal

import numpy as np
import pytest
import yaml

from engine_helpers import cli_args, ckpt_arrays, run_script, run_train_with_faults


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    from convattn.data import write_digits_imagefolder
    root = tmp_path_factory.mktemp("digits") / "tree"
    write_digits_imagefolder(root, size=16)
    return root


def test_short_training_loss_falls_and_eval(digits_dir, tmp_path):
    out = tmp_path / "run"
    r = run_script("train.py", cli_args(data_dir=digits_dir, ckpt_dir=out, epochs=2, max_steps_per_epoch=12,
                                        batch_size=32, lr=0.01, log_interval=4))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "epoch 1/2 step 4/12 loss" in r.stdout and "img/s ETA" in r.stdout
    # the model defaults the config left null are printed and saved with the values the run used
    from convattn.models import get_model_cfg
    mean = [float(m) for m in get_model_cfg("van_b0")["mean"]]
    saved = yaml.safe_load(open(out / "config.yaml"))
    assert saved["mean"] == mean and saved["drop_rate"] == 0.0 and saved["model"] == "van_b0", saved
    assert "effective config" in r.stdout and f"\nmean: {mean}\n".replace("'", "") in r.stdout
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(x["epoch"]) for x in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"]) < np.log(10) + 0.3
    assert float(rows[1]["val_top1"]) > 30.0  # 10 classes: chance is 10 %
    for name in ("config.yaml", "train_curves.png", "van_b0_best.ckpt", "van_b0-2_12.ckpt"):
        assert (out / name).is_file(), name
    assert not [p for p in os.listdir(out) if ".tmp" in p]
    from convattn.data.class_names import read_class_names  # the training tree's names, for scripts/infer.py
    assert read_class_names(str(out / "class_names.json")) == [str(i) for i in range(10)]
    from PIL import Image
    assert Image.open(out / "train_curves.png").size == (900, 420)
    # the eval script on the trained checkpoint reproduces the final validation top-1
    e = run_script("eval.py", ["-c", str(out / "config.yaml"), "--ckpt", str(out / "van_b0-2_12.ckpt")])
    assert e.returncode == 0, e.stderr[-3000:]
    assert f"top-1 {float(rows[1]['val_top1']):.2f}%" in e.stdout
    bad = run_script("eval.py", ["-c", str(out / "config.yaml")])
    assert bad.returncode == 2 and "--ckpt" in bad.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(digits_dir, tmp_path):
    out = tmp_path / "nan"
    r = run_train_with_faults(cli_args(data_dir=digits_dir, ckpt_dir=out, epochs=1, max_steps_per_epoch=6,
                                       ckpt_steps=2), nan_at_step=5)
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "loss is nan at epoch 1 step 5" in r.stdout
    assert "van_b0-1_4.ckpt" in r.stdout and "left intact" in r.stdout
    good = ckpt_arrays(out / "van_b0-1_4.ckpt")
    assert all(np.isfinite(v).all() for v in good.values())
    assert sorted(p for p in os.listdir(out) if p.endswith(".ckpt")) == ["van_b0-1_2.ckpt", "van_b0-1_4.ckpt"]


EMA_RUN = dict(epochs=2, max_steps_per_epoch=5, ckpt_steps=2, deterministic="true", mixup=0.5, cutmix=1.0,
               label_smoothing=0.1, ema="true", ema_decay=0.9, val_interval=2)


@pytest.fixture(scope="module")
def ema_run(digits_dir, tmp_path_factory):
    """One uninterrupted deterministic run with EMA (shared by the resume and best-checkpoint tests)."""
    full = tmp_path_factory.mktemp("ema") / "full"
    r = run_script("train.py", cli_args(data_dir=digits_dir, ckpt_dir=full, **EMA_RUN))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return full, r


def test_ema_best_checkpoint_evaluates_to_the_printed_best(ema_run):
    full, r = ema_run
    # the epoch-end evaluation ran on the EMA weights; the best checkpoint must keep the raw weights under their
    # own names and the averages under ema.* (as every periodic checkpoint does), so eval.py with ema on reproduces
    # the printed numbers and --resume from it continues with the right raw and EMA weights
    line = [x for x in r.stdout.splitlines() if x.startswith("epoch 2/2 done") and "(best)" in x]
    assert line, r.stdout[-2000:]
    printed = line[0].split("val ")[1].replace(" (best)", "")  # "top-1 A% top-5 B% loss C"
    e = run_script("eval.py", ["-c", str(full / "config.yaml"), "--ckpt", str(full / "van_b0_best.ckpt")])
    assert e.returncode == 0, e.stderr[-3000:]
    assert "(EMA weights)" in e.stdout and printed in e.stdout, (printed, e.stdout[-1000:])
    best, last = ckpt_arrays(full / "van_b0_best.ckpt"), ckpt_arrays(full / "van_b0-2_5.ckpt")
    assert best.keys() == last.keys()
    for key in best:
        np.testing.assert_array_equal(best[key], last[key], err_msg=key)


def test_sigkill_then_resume_is_bit_exact(digits_dir, tmp_path, ema_run):
    common = dict(data_dir=digits_dir, **EMA_RUN)
    cut = tmp_path / "cut"
    full, r = ema_run
    # killed (SIGKILL) after global step 9 = epoch 2 step 4; the newest checkpoint is global step 8 = epoch 2 step 3
    k = run_train_with_faults(cli_args(ckpt_dir=cut, **common), kill_at_step=9)
    assert k.returncode == -signal.SIGKILL, k.stdout[-2000:] + k.stderr[-2000:]
    assert not (cut / "van_b0-2_5.ckpt").exists()
    assert (cut / "van_b0-2_3.ckpt").is_file()
    r2 = run_script("train.py", cli_args(ckpt_dir=cut, resume="auto", **common))
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-2000:]
    assert "resumed from" in r2.stdout and "epoch 2, step 3" in r2.stdout
    a, b = ckpt_arrays(full / "van_b0-2_5.ckpt"), ckpt_arrays(cut / "van_b0-2_5.ckpt")
    assert a.keys() == b.keys()
    assert any(k.startswith("ema.") for k in a) and any(k.startswith("adam_m.") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    digest = [line for line in r.stdout.splitlines() if "sha256" in line]
    assert digest and digest == [line for line in r2.stdout.splitlines() if "sha256" in line]


def test_train_refuses_a_callback_without_the_hooks():
    from convattn.engine.trainer import train

    class Half:  # has one hook, not the protocol
        def on_step_end(self, state):
            pass

    with pytest.raises(TypeError, match="Half is not a training callback .*subclass convattn.engine.callbacks"):
        train(None, callbacks=[Half()])  # refused before any set-up
