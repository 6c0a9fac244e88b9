"""Issue 7: an X-volution network trained through the engine, then built in its deploy form from the checkpoint
(``create_model(deploy=True)`` through the engine's builder: BatchNorms folded, PSSA branch merged into one
convolution), gives the same validation accuracy and the same logits; ``scripts/eval.py --deploy`` (eval_main)
evaluates the deploy form of a checkpoint."""
import glob
import os

import numpy as np

import mindspore as ms

from convattn.engine.config import validate
from convattn.engine.trainer import build_loaders, build_model, evaluate, train


def _logits(net, dataset):
    forward = ms.jit(net.construct)
    return np.concatenate([forward(ms.Tensor(images)).asnumpy() for images, _ in
                           dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)])


def test_trained_xvolution_deploy_form_keeps_accuracy_and_logits(digits32, tmp_path, capsys):
    from convattn.data import resolve_data_cfg
    from convattn.engine.cli import eval_main
    from convattn.models import get_model_cfg
    out = tmp_path / "run"
    cfg = validate(dict(
        dataset="digits", data_dir=digits32, num_classes=10, image_size=32, crop_pct=1.0, interpolation="bilinear",
        scale=[0.6, 1.0], hflip=0.0, model="xvolution_resnet34", model_kwargs={"layers": [1, 1, 1, 1]},
        batch_size=32, epochs=2, max_steps_per_epoch=8, val_interval=0, opt="momentum", lr=0.02, weight_decay=1e-4,
        min_lr=1e-4, warmup_epochs=0, mode=0, seed=0, num_parallel_workers=1, log_interval=100, ckpt_dir=str(out),
        keep_checkpoint_max=1))
    metrics = train(cfg)
    with open(os.path.join(out, "train_log.csv")) as f:
        losses = [float(line.split(",")[1]) for line in f.readlines()[1:]]
    assert losses[1] < losses[0], losses  # it trained (16 steps: BN statistics, not accuracy, are the point here)
    ckpt = sorted(glob.glob(os.path.join(out, "xvolution_resnet34-2_*.ckpt")))[-1]

    net = build_model(cfg)
    ms.load_param_into_net(net, ms.load_checkpoint(ckpt), strict_load=True)
    _, make_val, _ = build_loaders(cfg, resolve_data_cfg(cfg, get_model_cfg(cfg.model)), 0, 1)
    net.set_train(False)
    before = evaluate(net, make_val(), 10)
    logits_train_form = _logits(net, make_val())
    assert before["top1"] == metrics["top1"]  # the reloaded checkpoint is the trained network

    # the deploy form: built from the checkpoint and re-parameterised by create_model, before anything ran it
    dep = build_model(cfg, pretrained=ckpt, load_args={"classifier": None}, deploy=True)
    from convattn.layers import XVolution
    ops_ = [c for _, c in dep.cells_and_names() if isinstance(c, XVolution)]
    assert ops_ and all(c.deployed for c in ops_) and not any(c.deployed for _, c in net.cells_and_names()
                                                               if isinstance(c, XVolution))
    assert dep.form.deploy and dep.deploy_report and dep.load_report["loaded"] > 0
    after = evaluate(dep, make_val(), 10)
    logits_deploy = _logits(dep, make_val())
    assert after["top1"] == before["top1"] and after["top5"] == before["top5"], (before, after)
    rel = np.abs(logits_deploy - logits_train_form).max() / np.abs(logits_train_form).max()
    assert rel <= 1e-5, f"deploy-form logits differ by {rel:.3g} (relative)"

    # the CLI: eval.py --deploy true prints the same top-1 for the deploy form of the checkpoint
    capsys.readouterr()
    argv = ["-c", os.path.join(out, "config.yaml"), "--ckpt", ckpt, "--deploy"]  # bare flag = true
    assert eval_main(argv) == 0
    text = capsys.readouterr().out
    assert "switched to the deploy form" in text and "(deploy form)" in text
    assert f"top-1 {before['top1']:.2f}%" in text, text
