"""Gradient accumulation: N micro-batches of b give the update of one batch of N*b (network without batch
statistics), with SGD-momentum and AdamW, loss scaling and clipping acting on the accumulated gradient."""
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.engine.losses import SoftTargetCrossEntropy
from convattn.engine.optim import create_optimizer
from convattn.engine.step import TrainStep


def _net():
    ms.set_seed(3)
    return nn.SequentialCell([nn.Conv2d(3, 6, 3, pad_mode="pad", padding=1, has_bias=True), nn.GELU(),
                              nn.LayerNorm((6, 8, 8), begin_norm_axis=1, begin_params_axis=1), nn.Flatten(),
                              nn.Dense(6 * 8 * 8, 5)])


def _run(opt, n_micro, batches, clip, scale):
    net = _net()
    cfg = SimpleNamespace(opt=opt, weight_decay=0.05, betas=[0.9, 0.999], eps=1e-8, momentum=0.9, nesterov=False)
    lrs = np.array([0.01, 0.006, 0.004], np.float32)
    optimizer = create_optimizer(cfg, net.trainable_params(), lrs)
    loss_fn = SoftTargetCrossEntropy()
    scaler = ms.amp.DynamicLossScaler(scale, 2, 1000) if scale else None

    def forward(x, y):
        loss = loss_fn(net(x), y)
        return scaler.scale(loss) if scaler is not None else loss

    step = TrainStep(forward, optimizer, n_micro, scaler=scaler, clip=clip)
    losses = []
    for i, (x, y) in enumerate(batches):
        loss, finite = step(ms.Tensor(x), ms.Tensor(y), apply=(i + 1) % n_micro == 0)
        assert (finite is None) == ((i + 1) % n_micro != 0)
        losses.append(float(loss.asnumpy()))
    return {p.name: p.asnumpy() for p in net.trainable_params()}, int(optimizer.global_step.asnumpy()[0]), losses


@pytest.mark.parametrize("opt,clip,scale", [("momentum", 0.0, 0), ("adamw", 0.05, 1024.0)])
def test_micro_batches_equal_one_large_batch(opt, clip, scale):
    rng = np.random.RandomState(0)
    x = rng.randn(24, 3, 8, 8).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.randint(0, 5, 24)]
    big, steps_big, _ = _run(opt, 1, [(x[i:i + 12], y[i:i + 12]) for i in (0, 12)], clip, scale)
    small, steps_small, losses = _run(opt, 3, [(x[i:i + 4], y[i:i + 4]) for i in range(0, 24, 4)], clip, scale)
    assert steps_big == steps_small == 2  # the optimizer (and the lr schedule it indexes) stepped once per window
    assert len(losses) == 6 and all(np.isfinite(losses))
    for name in big:
        np.testing.assert_allclose(small[name], big[name], rtol=0, atol=1e-5, err_msg=name)
    # the comparison can fail: one step of b alone is not the same update
    single, _, _ = _run(opt, 1, [(x[:4], y[:4]), (x[4:8], y[4:8])], clip, scale)
    assert max(np.abs(single[k] - big[k]).max() for k in big) > 1e-3


def test_accumulation_steps_below_one_refused():
    net = _net()
    opt = nn.SGD(net.trainable_params(), 0.1)
    with pytest.raises(ValueError, match="accumulation_steps"):
        TrainStep(lambda x, y: x, opt, 0)


def test_accumulation_under_o2_steps_once_per_window():
    """The setting of the Ascend recipes that accumulate to fit a 910A: AMP O2 (BatchNorm kept float32), a dynamic
    loss scale, AdamW and clipping, two micro-batches per window, GRAPH mode. The weights stay float32 masters and
    change only when a window closes."""
    from convattn.engine.step import build_train_step

    ms.set_seed(0)
    net = nn.SequentialCell([nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Dense(8 * 8 * 8, 5)])
    cfg = SimpleNamespace(opt="adamw", weight_decay=0.05, betas=[0.9, 0.999], eps=1e-8, momentum=0.9, nesterov=False)
    opt = create_optimizer(cfg, net.trainable_params(), np.full(4, 1e-3, np.float32))
    step = build_train_step(net, SoftTargetCrossEntropy(), opt, amp_level="O2", loss_scale=1024.0,
                            accumulation_steps=2, clip=5.0)
    rng = np.random.RandomState(0)
    before = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    for i in range(4):
        x = ms.Tensor(rng.randn(4, 3, 8, 8).astype(np.float32))
        y = ms.Tensor(np.eye(5, dtype=np.float32)[rng.randint(0, 5, 4)])
        loss, finite = step(x, y, apply=i % 2 == 1)
        assert np.isfinite(float(loss.asnumpy())) and (finite is None) == (i % 2 == 0)
        assert int(opt.global_step.asnumpy()[0]) == (i + 1) // 2
        changed = any(not np.array_equal(before[p.name], p.asnumpy()) for p in net.trainable_params())
        assert changed == (i > 0), i  # nothing moves inside the first window
    assert all(p.dtype == ms.float32 for p in net.trainable_params())
    assert float(step.scaler.scale_value.asnumpy()) == 1024.0  # no overflow skipped a window


# ---------------------------------------------------------------------------------------------- through train()
DEIT = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)  # LayerNorm only


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    from convattn.data import write_digits_imagefolder
    root = tmp_path_factory.mktemp("digits16") / "tree"
    write_digits_imagefolder(root, size=16)
    return root


def _train(digits16, out, callbacks=(), **over):
    from convattn.engine.config import validate
    from convattn.engine.trainer import train
    cfg = dict(dataset="digits", data_dir=str(digits16), num_classes=10, image_size=16, crop_pct=1.0,
               interpolation="bilinear", scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0, model="deit_tiny",
               model_kwargs=DEIT, drop_path_rate=0.0, opt="momentum", lr=0.05, weight_decay=1e-4, min_lr=1e-4,
               epochs=1, val_interval=0, warmup_epochs=0, mode=0, seed=0, num_parallel_workers=1, log_interval=1,
               ckpt_dir=str(out), keep_checkpoint_max=10)
    cfg.update(over)
    return train(validate(cfg), callbacks=callbacks)


def _weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()
            if not k.startswith(("train.", "moments.", "learning_rate", "global_step"))}


def test_trainer_accumulation_and_resume(digits16, tmp_path, capsys):
    from convattn.engine.trainer import train  # noqa: F401  (import cost outside the timed runs)
    # 4 micro-batches of 8 in windows of 2 == 2 steps of 16 (the same seeded epoch order); lr_scale sees 16
    _train(digits16, tmp_path / "acc", batch_size=8, accumulation_steps=2, max_steps_per_epoch=5, ckpt_steps=1,
           lr_scale="linear", lr_base_batch=16)
    text = capsys.readouterr().out
    assert "2 optimizer steps/epoch of 2 micro-batches (the last 1 micro-batches" in text
    assert "global batch 16 = 8 per device x 1 device x 2 accumulation steps (lr_scale linear: lr x 1)" in text
    assert "note: BatchNorm" not in text  # printed only for networks with BatchNorm
    _train(digits16, tmp_path / "big", batch_size=16, max_steps_per_epoch=2, ckpt_steps=1)
    acc, big = _weights(tmp_path / "acc" / "deit_tiny-1_4.ckpt"), _weights(tmp_path / "big" / "deit_tiny-1_2.ckpt")
    assert acc.keys() == big.keys()
    for k in acc:
        np.testing.assert_allclose(acc[k], big[k], rtol=0, atol=1e-5, err_msg=k)
    step = ms.load_checkpoint(str(tmp_path / "acc" / "deit_tiny-1_2.ckpt"))  # saved after window 1 = micro-batch 2
    assert int(step["train.global_step"].asnumpy()) == 1 and int(step["train.step"].asnumpy()) == 2
    # resuming at that window boundary continues exactly; a callback passed to train() sees the hooks in order
    from convattn.engine.callbacks import Callback

    class Record(Callback):
        def __init__(self):
            self.seen = []

        def on_train_begin(self, s):
            self.seen.append(("train_begin", s.start_epoch, s.start_step))

        def on_epoch_begin(self, s):
            self.seen.append(("epoch_begin", s.epoch))

        def on_step_begin(self, s):
            self.seen.append(("step_begin", s.step, s.global_step, s.opt_step, s.window_end, s.images.shape[0]))

        def on_step_end(self, s):
            self.seen.append(("step_end", s.step, math.isfinite(s.loss)))

        def on_eval_begin(self, s):
            self.seen.append(("eval_begin",))

        def on_eval_end(self, s):
            self.seen.append(("eval_end", s.metrics["n"]))

        def on_epoch_end(self, s):
            self.seen.append(("epoch_end", s.epoch, os.path.basename(s.last_ckpt)))

        def on_train_end(self, s):
            self.seen.append(("train_end", s.best_acc == s.metrics["top1"]))

    record = Record()
    _train(digits16, tmp_path / "acc", batch_size=8, accumulation_steps=2, max_steps_per_epoch=5, ckpt_steps=1,
           lr_scale="linear", lr_base_batch=16, resume=str(tmp_path / "acc" / "deit_tiny-1_2.ckpt"),
           ckpt_dir=str(tmp_path / "resumed"), callbacks=[record])
    assert record.seen == [("train_begin", 1, 2), ("epoch_begin", 1), ("step_begin", 3, 3, 1, False, 8),
                           ("step_end", 3, True), ("step_begin", 4, 4, 2, True, 8), ("step_end", 4, True),
                           ("eval_begin",), ("eval_end", 359), ("epoch_end", 1, "deit_tiny-1_4.ckpt"),
                           ("train_end", True)], record.seen
    again = _weights(tmp_path / "resumed" / "deit_tiny-1_4.ckpt")
    for k in acc:
        np.testing.assert_allclose(again[k], acc[k], rtol=0, atol=1e-6, err_msg=k)
    # a checkpoint inside a window (micro-batch 1 of windows of 2), or inside an epoch counted with another window
    # size, is refused naming what differs; at an epoch's end another window size continues (schedule recomputed)
    with pytest.raises(ValueError, match="inside an accumulation window of 2"):
        _train(digits16, tmp_path / "x", batch_size=16, accumulation_steps=2, max_steps_per_epoch=2,
               resume=str(tmp_path / "big" / "deit_tiny-1_1.ckpt"))
    with pytest.raises(ValueError, match=r"stops inside epoch 1 .* accumulation_steps 2 \(this run: 1\)"):
        _train(digits16, tmp_path / "y", batch_size=8, accumulation_steps=1, max_steps_per_epoch=5,
               resume=str(tmp_path / "acc" / "deit_tiny-1_2.ckpt"))
    assert not (tmp_path / "y" / "config.yaml").exists()  # a refused start writes nothing
    out = _train(digits16, tmp_path / "big", batch_size=8, accumulation_steps=2, max_steps_per_epoch=4, epochs=2,
                 resume=str(tmp_path / "big" / "deit_tiny-1_2.ckpt"), ckpt_dir=str(tmp_path / "big"))
    assert math.isfinite(out["top1"])
    longer = ms.load_checkpoint(str(tmp_path / "big" / "deit_tiny-2_4.ckpt"))
    assert int(longer["train.epoch"].asnumpy()) == 2 and int(longer["train.global_step"].asnumpy()) == 2 + 2
    assert "the lr schedule is recomputed" in capsys.readouterr().out


def test_recompute_config_key_trains_with_every_block_recomputed(digits16, tmp_path, capsys):
    """recompute: true (the per-recipe memory option) marks the network's residual blocks through set_recompute,
    says so, and the run trains to the same weights as without it (recompute changes what is kept, not the math)."""
    _train(digits16, tmp_path / "plain", batch_size=8, max_steps_per_epoch=2, deterministic=True)
    assert "rebuilt in the backward pass" not in capsys.readouterr().out
    _train(digits16, tmp_path / "rc", batch_size=8, max_steps_per_epoch=2, deterministic=True, recompute=True)
    assert "recompute: 1 blocks of deit_tiny rebuilt in the backward pass" in capsys.readouterr().out
    a = _weights(sorted((tmp_path / "plain").glob("*.ckpt"))[-1])
    b = _weights(sorted((tmp_path / "rc").glob("*.ckpt"))[-1])
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
