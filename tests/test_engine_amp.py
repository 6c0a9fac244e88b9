"""Mixed precision through the engine on CPU: float16 AMP (O2 and O3, dynamic loss scaling) trains and the loss falls.

MindSpore 2.10 has no bfloat16 CPU kernels (refused at config validation, see test_engine_config.py); float16 runs.
"""
import csv
import math
import os

import pytest

from convattn.engine.config import validate
from convattn.engine.trainer import train


@pytest.mark.parametrize("amp_level", ["O2", "O3"])  # O1 is the same engine path with a narrower cast list
def test_amp_float16_trains(amp_level, digits32, tmp_path):
    cfg = validate(dict(
        dataset="digits", data_dir=digits32, num_classes=10, image_size=32, crop_pct=1.0, interpolation="bilinear",
        scale=[1.0, 1.0], hflip=0.0, model="van_b0",
        model_kwargs={"embed_dims": [16, 32, 64], "depths": [1, 1, 1], "mlp_ratios": [4, 4, 4]},
        drop_path_rate=0.0, batch_size=32, epochs=3, max_steps_per_epoch=5, val_interval=0, warmup_epochs=0, mode=0,
        seed=0, num_parallel_workers=1, log_interval=1000, ckpt_dir=str(tmp_path), keep_checkpoint_max=1,
        ckpt_interval=3, opt="adamw", lr=3e-3, weight_decay=0.05, min_lr=1e-4, amp_level=amp_level,
        amp_dtype="float16", label_smoothing=0.0))
    metrics = train(cfg)
    with open(os.path.join(tmp_path, "train_log.csv"), newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], f"{amp_level}: loss did not fall: {losses}"
    assert metrics["n"] == 359 and 0.0 <= metrics["top1"] <= 100.0
