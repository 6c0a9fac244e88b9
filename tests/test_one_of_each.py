"""One of each: one training step (trainer, benchmark harness, Ascend audit), one definition of a model's small
instance, one checkpoint reader, and one way to read a device target (any case)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import mindspore as ms
from mindspore import nn

import convattn
from convattn.engine import step as step_mod
from convattn.engine.losses import SoftTargetCrossEntropy
from convattn.models import small_instance_kwargs

REPO = Path(__file__).resolve().parents[1]


def _tiny_net():
    ms.set_seed(0)
    return nn.SequentialCell([nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True), nn.BatchNorm2d(4),
                              nn.ReLU(), nn.Flatten(), nn.Dense(4 * 8 * 8, 5)])


def _batch():
    rng = np.random.default_rng(0)
    return (ms.Tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)),
            ms.Tensor(np.eye(5, dtype=np.float32)[[0, 1, 2, 3]]))


@pytest.fixture
def graph_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


@pytest.fixture
def recorded(monkeypatch):
    """Every step built by ``engine.step.build_train_step`` (and the network and settings it was given)."""
    calls = []
    real = step_mod.build_train_step

    def record(net, loss_fn, optimizer, **kwargs):
        step = real(net, loss_fn, optimizer, **kwargs)
        calls.append(dict(kwargs, net=net, step=step, optimizer=optimizer))
        return step
    monkeypatch.setattr(step_mod, "build_train_step", record)
    return calls


# ------------------------------------------------------------------------------------------ one training step
def test_build_train_step_applies_amp_and_the_dynamic_loss_scale(graph_mode):
    """O2 in float16 (applied once: a network already under O2 is not cast again), a dynamic loss scale from 1024:
    a finite step updates the weights; an overflowing one leaves them and halves the scale. The compiled step is one
    cell graph holding the forward, the overflow check and the optimizer update."""
    from convattn.bench.ascend_audit import graph_primitives

    net = _tiny_net()
    opt = nn.Momentum(net.trainable_params(), 0.01, 0.9)
    step = step_mod.build_train_step(net, SoftTargetCrossEntropy(), opt, amp_level="O2", amp_dtype="float16",
                                     loss_scale=1024.0)
    assert step.network._amp_level == "O2" and step_mod.mixed_precision(step.network, "O2") is step.network
    assert float(step.scaler.scale_value.asnumpy()) == 1024.0 and list(step.graphs) == ["step"]
    x, y = _batch()
    ops = {r["op"] for r in graph_primitives(step.graphs["step"], x, y)}
    assert {"ApplyMomentum", "IsFinite", "Cast", "BatchNorm"} <= ops, ops
    before = [p.asnumpy().copy() for p in opt.parameters]
    loss, finite = step(x, y)
    assert bool(finite.asnumpy()) and np.isfinite(loss.asnumpy()) and float(loss.asnumpy()) < 10
    after = [p.asnumpy().copy() for p in opt.parameters]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    step.scaler.scale_value.set_data(ms.Tensor(3e38, ms.float32))  # float16 gradients overflow
    _, finite = step(x, y)
    assert not bool(finite.asnumpy()) and float(step.scaler.scale_value.asnumpy()) == pytest.approx(1.5e38)
    assert all(np.array_equal(a, p.asnumpy()) for a, p in zip(after, opt.parameters))
    loss, grads = step.gradients(x, y)  # the same forward and backward, unscaled, no update
    assert len(grads) == len(step.parameters) and np.isfinite(loss.asnumpy())
    assert all(np.array_equal(a, p.asnumpy()) for a, p in zip(after, opt.parameters))


def test_the_trainer_trains_with_build_train_step(recorded, digits32, tmp_path, monkeypatch):
    from convattn.engine import trainer
    from convattn.engine.callbacks import Callback
    from convattn.engine.config import validate

    monkeypatch.setattr(trainer, "build_train_step", step_mod.build_train_step)  # the recording one
    seen = {}

    class Look(Callback):
        def on_step_end(self, s):
            seen.update(net=s.net, scaler=s.scaler)

    cfg = validate(dict(dataset="digits", data_dir=digits32, num_classes=10, image_size=16, crop_pct=1.0,
                        interpolation="bilinear", scale=[1.0, 1.0], hflip=0.0, model="van_b0",
                        model_kwargs={"embed_dims": [8, 16], "depths": [1, 1], "mlp_ratios": [2, 2]},
                        drop_path_rate=0.0, batch_size=16, epochs=1, max_steps_per_epoch=2, val_interval=0,
                        warmup_epochs=0, mode=0, seed=0, num_parallel_workers=1, log_interval=1000,
                        ckpt_dir=str(tmp_path), opt="adamw", lr=1e-3, min_lr=1e-4, amp_level="O2",
                        amp_dtype="float16", loss_scale=512.0))
    trainer.train(cfg, callbacks=[Look()])
    (call,) = recorded
    assert (call["amp_level"], call["amp_dtype"], call["loss_scale"], call["accumulation_steps"]) == \
        ("O2", "float16", 512.0, 1)
    assert seen["net"] is call["step"].network and seen["scaler"] is call["step"].scaler


def _harness_train_case() -> dict:
    """run_one in train mode, float16 (in a worker process: run_one sets the device, which a process does once)."""
    from convattn.bench.harness import BenchConfig, run_one

    calls = []
    real = step_mod.build_train_step

    def record(net, loss_fn, optimizer, **kwargs):
        step = real(net, loss_fn, optimizer, **kwargs)
        calls.append((kwargs, step.scaler is not None, step.network is net))
        return step
    step_mod.build_train_step = record
    cfg = BenchConfig(mode="train", precision="float16", warmup=0, iters=1, image_size=(32, 32),
                      model_kwargs={"embed_dims": [8, 16], "depths": [1, 1], "mlp_ratios": [2, 2]})
    row = run_one("van_b0", 2, cfg)
    return {"row": {k: row[k] for k in ("status", "mode", "ms_per_step")}, "calls": calls}


def test_the_benchmark_harness_times_build_train_step():
    from workers import run_in_workers, unwrap

    result = unwrap(run_in_workers(_harness_train_case, {"h": ((), {})})["h"])
    row = result["row"]
    assert row["status"] == "ok" and row["mode"] == "train" and row["ms_per_step"] > 0
    ((kwargs, scaled, same_network),) = result["calls"]
    assert kwargs["amp_level"] == "O2" and scaled  # the trainer's loss scaling
    assert same_network  # the network is under O2 already for the timing: not cast a second time


def test_the_ascend_audit_audits_the_trainers_o2_step(recorded):
    """The audited training graph is the trainer's step with the Ascend recipes' AMP: the update and the loss-scale
    overflow check are in it (a look-alike returning gradients had neither)."""
    from convattn.bench.ascend_audit import ASCEND_AMP, audit_net

    net = _tiny_net()
    x, y = _batch()
    result = audit_net("tiny", net, x, y)
    (call,) = recorded
    assert {k: call[k] for k in ASCEND_AMP} == ASCEND_AMP and result["step"] is call["step"]
    assert isinstance(call["step"].loss_fn, SoftTargetCrossEntropy)
    assert {"AdamWeightDecay", "IsFinite"} <= set(result["train"]) and "AdamWeightDecay" not in result["infer"]
    assert "Cast" in result["train"] and "float16" in result["train"]["Conv2D"]["dtypes"]


def test_the_ascend_recipes_use_the_audited_amp():
    from convattn.bench.ascend_audit import ASCEND_AMP

    recipes = sorted((REPO / "configs").rglob("*_ascend.yaml"))
    assert recipes
    for path in recipes:
        cfg = yaml.safe_load(path.read_text())
        assert {k: cfg.get(k) for k in ASCEND_AMP} == ASCEND_AMP, path.name


# ------------------------------------------------------------------------------------------ one small instance
def test_small_instance_kwargs():
    cfg = convattn.get_model_cfg("acmix_swin_tiny")
    assert small_instance_kwargs("acmix_swin_tiny") == (cfg["small_kwargs"], tuple(cfg["small_input_size"]))
    kwargs, size = small_instance_kwargs("acmix_swin_tiny", input_size=32, img_size=32, patch_size=2)
    assert kwargs == dict(cfg["small_kwargs"], img_size=32, patch_size=2) and size == (3, 32, 32)
    assert small_instance_kwargs("van_b0", input_size=(48, 40))[1] == (3, 48, 40)
    assert small_instance_kwargs("van_b0", full=True) == ({}, (3, 224, 224))
    with pytest.raises(ValueError, match="input_size"):
        small_instance_kwargs("van_b0", input_size=(1, 2, 3, 4))
    from convattn.bench.ascend_audit import CI_OVERRIDES, SMALL_CONFIGS
    for name, (overrides, side) in CI_OVERRIDES.items():
        assert SMALL_CONFIGS[name] == (small_instance_kwargs(name, **overrides)[0], side)


def test_small_instances_have_one_definition():
    """Only the registry reads the default configs' small_kwargs / small_input_size (and the test of it above): tools
    and tests build a small model through small_instance_kwargs."""
    pattern = re.compile(r"""\[\s*["']small_(kwargs|input_size)["']\s*\]|get\(\s*["']small_(kwargs|input_size)""")
    readers = {REPO / "src" / "convattn" / "models" / "registry.py", Path(__file__).resolve()}
    files = [p for root in ("src", "tests", "scripts") for p in (REPO / root).rglob("*.py")
             if p.resolve() not in readers]
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in files
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == [], offenders


# ------------------------------------------------------------------------------------------ one checkpoint reader
def test_infer_reads_its_checkpoint_once_through_the_models_reader(tmp_path, monkeypatch, pynative):
    from convattn.deploy.infer import Predictor
    from convattn.models import helpers

    small, _ = small_instance_kwargs("van_b0")
    ckpt = str(tmp_path / "van.ckpt")
    ms.save_checkpoint(convattn.create_model("van_b0", num_classes=7, **small), ckpt)
    reads, loads = [], []
    real_read, real_load = helpers.read_checkpoint, ms.load_checkpoint
    monkeypatch.setattr(helpers, "read_checkpoint", lambda path: reads.append(path) or real_read(path))
    monkeypatch.setattr(ms, "load_checkpoint", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    pred = Predictor(model="van_b0", ckpt=ckpt, model_kwargs=small)
    assert pred.num_classes == 7  # the classifier's rows, read from that one read
    assert reads == [ckpt] and loads == [{}]
    # the reader's errors, as before
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor(model="van_b0", ckpt=str(tmp_path / "missing.ckpt"), model_kwargs=small)
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(helpers.CheckpointMismatchError, match="is not a readable MindSpore checkpoint"):
        Predictor(model="van_b0", ckpt=str(tmp_path / "text.ckpt"), model_kwargs=small)
    with pytest.raises(helpers.CheckpointMismatchError, match=f"checkpoint '{re.escape(ckpt)}' does not match"):
        Predictor(model="van_b0", ckpt=ckpt, model_kwargs={"depths": [1, 1, 1, 2]})


# ------------------------------------------------------------------------------------------ targets in any case
def test_config_targets_in_any_case():
    from convattn.engine.config import ConfigError, load_config, parse_cli, validate

    cfg = validate(load_config(None, {"dataset": "digits", "num_classes": 10, "model": "van_b0",
                                      "device_target": "cpu", "target": "ASCEND"}))
    assert (cfg.device_target, cfg.target) == ("CPU", "Ascend")
    cfg = validate(parse_cli(["--model", "van_b0", "--dataset", "digits", "--num_classes", "10",
                              "--device_target", "Cpu", "--target", "gpu"], "t"))
    assert (cfg.device_target, cfg.target) == ("CPU", "GPU")
    with pytest.raises(ConfigError, match="'device_target' must be one of"):
        validate(load_config(None, {"dataset": "digits", "num_classes": 10, "model": "van_b0",
                                    "device_target": "tpu"}))


def test_cli_target_flags_in_any_case(capsys):
    from convattn.bench.cli import build_parser as bench_parser
    from convattn.deploy.cli import build_parser as export_parser
    from convattn.deploy.infer_cli import build_parser as infer_parser

    args = bench_parser().parse_args(["--device_target", "cpu", "--target", "ascend"])
    assert (args.device_target, args.target) == ("CPU", "Ascend")
    assert bench_parser().parse_args([]).device_target == "CPU"
    assert export_parser().parse_args(["--model", "van_b0", "--target", "gPu"]).target == "GPU"
    assert infer_parser().parse_args(["x.png", "--device_target", "ASCEND"]).device_target == "Ascend"
    for parser, argv in ((bench_parser(), ["--target", "tpu"]), (export_parser(), ["--model", "m", "--target", "tpu"]),
                         (infer_parser(), ["x.png", "--device_target", "tpu"])):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert "unknown target 'tpu'; choose one of CPU, GPU, Ascend" in capsys.readouterr().err


def test_launcher_takes_the_device_target_in_any_case(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(dataset="digits", num_classes=10, model="van_b0")))
    (tmp_path / "data").mkdir()
    env = dict(os.environ, DRY_RUN="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    run = ["bash", str(REPO / "scripts" / "run_distribute_train.sh"), str(config),
           str(tmp_path / "data"), "1"]
    ok = subprocess.run(run + ["cpu"], capture_output=True, text=True, env=env, timeout=120, cwd=str(REPO))
    assert ok.returncode == 0 and "--device_target cpu" in ok.stdout, ok.stderr
    bad = subprocess.run(run + ["tpu"], capture_output=True, text=True, env=env, timeout=120, cwd=str(REPO))
    assert bad.returncode == 1 and "DEVICE_TARGET must be CPU, GPU or Ascend, got 'tpu'" in bad.stderr
