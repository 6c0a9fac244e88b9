"""One target switch (create_model(target=)), the formulation table, and checkpoints portable across forms."""
import re
from pathlib import Path

import numpy as np
import pytest
import mindspore as ms

import convattn
from convattn.layers import ACmix, SAM, BuildForm, build_target, decide_form, resolve_target
from convattn.layers.targets import FORMULATIONS, TARGETS, form_table, select_form
from convattn.bench.target_table import FAMILIES as TABLE_FAMILIES
from convattn.models.helpers import load_checkpoint
from convattn.models.registry import small_instance_kwargs

SRC = Path(__file__).resolve().parents[1] / "src" / "convattn"

# Every family with a device-dependent formulation, at a small width that keeps its code paths: the models of
# scripts/target_table.py --check (their small instance; SAN: 3x3 footprints so 64x64 inputs reach the last stage)
# but san10_patchwise, which only the table's check runs
FAMILIES = {name: spec for name, spec in TABLE_FAMILIES.items() if name != "san10_patchwise"}


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def test_unknown_target_names_the_choices():
    with pytest.raises(ValueError, match="unknown target 'TPU'; choose one of CPU, GPU, Ascend"):
        convattn.create_model("van_b0", target="TPU")
    with pytest.raises(ValueError, match="choose one of CPU, GPU, Ascend"):
        resolve_target(3)
    assert resolve_target("ascend") == "Ascend" and resolve_target(None) == ms.get_context("device_target")
    from convattn.engine.config import ConfigError, validate, load_config
    cfg = load_config(None, {"dataset": "digits", "num_classes": 10, "target": "NPU"})
    with pytest.raises(ConfigError, match="'target' must be one of"):
        validate(cfg)


def test_explicit_form_the_target_cannot_run_fails_naming_both():
    with build_target("Ascend"):
        with pytest.raises(ValueError, match=r"ACmix: attn_impl='fused' .* cannot run on target 'Ascend'.*"
                                             r"attn_impl='fast' or attn_impl='unfold'"):
            ACmix(16, 16, attn_impl="fused")
        with pytest.raises(ValueError, match="SAM: attn_impl='fused' .* cannot run on target 'Ascend'"):
            SAM("pairwise", 16, 4, 16, 4, 3, attn_impl="fused")
    with pytest.raises(ValueError, match="depthwise_conv=False .* cannot run on target 'Ascend'.*depthwise_conv=True"):
        convattn.create_model("acmix_pvt_tiny", target="Ascend", depthwise_conv=False, img_size=64,
                              depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="SAM: attn_impl='fused' .* cannot run on target 'GPU'"):
        convattn.create_model("san10_pairwise", target="GPU", attn_impl="fused", layers=(1, 1, 1, 1, 1))
    with build_target("GPU"):  # a form the target does run is kept
        assert ACmix(16, 16, attn_impl="unfold", depthwise_conv=True).attn_impl == "unfold"


def test_layers_follow_the_table_and_never_read_the_device():
    offenders = [str(p.relative_to(SRC)) for p in (SRC / "layers").rglob("*.py")
                 if p.name != "targets.py" and re.search(r"device_target|get_context", p.read_text())]
    assert offenders == [], f"layers read MindSpore's device themselves: {offenders}"
    fused = decide_form("CPU").cpu_backend  # the CPU backend serves this machine
    for t in TARGETS:
        with build_target(t):
            acmix, sam = ACmix(16, 16, 3, head=2), SAM("pairwise", 16, 4, 16, 4, 3)
        conv, att, agg = (FORMULATIONS[k].default[t] for k in ("acmix_conv", "acmix_attention", "sam_aggregation"))
        assert acmix.depthwise_conv == (conv == "depthwise")
        assert acmix.attn_impl == (att if att != "fused" or fused else "fast")
        assert sam.attn_impl == (agg if agg != "fused" or fused else "unfold")
        # the fused kernels (convattn.cpu cells) exactly where the target is the CPU and the backend serves
        assert (acmix.attention_form() == "fused") == sam.fused == (t == "CPU" and fused)
        assert bool(_cpu_cells(acmix) + _cpu_cells(sam)) == (t == "CPU" and fused)  # no Custom cells off CPU
        assert select_form("acmix_conv", target=t) == conv
    assert {r["target"] for r in form_table()} == set(TARGETS) and len(form_table()) == 3 * len(FORMULATIONS)


def test_weight_map_converts_only_between_the_two_forms(tmp_path):
    from convattn.layers import map_between_forms
    from convattn.models.helpers import CheckpointMismatchError

    w = np.arange(8 * 9 * 9, dtype=np.float32).reshape(8, 9, 3, 3)
    dw = map_between_forms("layer1.0.conv2.dep_conv.weight", w, (72, 1, 3, 3))
    np.testing.assert_array_equal(dw[5 * 9 + 4, 0], w[5, 4])  # output o, slot i -> depth-wise channel o*k*k + i
    np.testing.assert_array_equal(map_between_forms("moments.a.dep_conv.weight", dw, (8, 9, 3, 3)), w)
    assert map_between_forms("a.dep_conv.weight", w, (36, 2, 3, 3)) is None  # not the other form
    assert map_between_forms("a.dep_conv.weight", w, (24, 1, 3, 3)) is None
    assert map_between_forms("a.conv.weight", w, (72, 1, 3, 3)) is None  # not a form-dependent parameter
    # another width is still refused, with the shape report
    path = str(tmp_path / "w.ckpt")
    with build_target("CPU"):
        ms.save_checkpoint(ACmix(16, 16, 3, head=2), path)
        other = ACmix(16, 32, 3, head=2, depthwise_conv=True)
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_checkpoint(other, path, classifier=None)


def _cpu_cells(net):
    """Names of the CPU backend's cells (convattn.cpu) inside ``net``."""
    return [n for n, c in net.cells_and_names() if type(c).__module__.startswith("convattn.cpu")]


def test_model_form_and_target_are_true_for_every_target():
    """create_model builds one form and records it: model.target and model.form say what was built (the CPU
    backend only for the CPU target, never export-safe); the Ascend form has no non-depth-wise grouped
    convolution and, with the same weights, equals the CPU form."""
    from convattn.deploy import ascend_grouped_conv_report

    small, size = convattn.models.small_instance_kwargs("acmix_resnet26")
    kwargs = dict(small, num_classes=10)
    backend = decide_form("CPU").cpu_backend
    nets = {}
    for t in TARGETS:
        net = convattn.create_model("acmix_resnet26", target=t, **kwargs)
        assert net.target == t and isinstance(net.form, BuildForm) and net.form.target == t, (t, net.form)
        assert net.form.cpu_backend == (t == "CPU" and backend) and not net.form.export_safe
        assert not net.form.deploy and net.deploy_report == [] and net.load_report is None
        assert bool(_cpu_cells(net)) == net.form.cpu_backend, (t, _cpu_cells(net)[:3])
        grouped = ascend_grouped_conv_report(net)
        assert (grouped == []) == (t == "Ascend"), (t, grouped[:3])  # CPU/GPU: the grouped dep_conv
        nets[t] = net
    # the Ascend form built from the CPU form's weights (the one loader maps dep_conv) equals it
    state = {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), name=p.name) for p in nets["CPU"].get_parameters()}
    asc = convattn.create_model("acmix_resnet26", target="Ascend", pretrained=state, **kwargs)
    assert asc.target == "Ascend" and asc.load_report["form_mapped"] and ascend_grouped_conv_report(asc) == []
    x = ms.Tensor(np.random.default_rng(0).standard_normal((1,) + tuple(size)).astype(np.float32))
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        outs = []
        for net in (nets["CPU"], asc):
            net.set_train(False)
            outs.append(net(x).asnumpy())
    finally:
        ms.set_context(mode=previous)
    assert _rel(outs[1], outs[0]) <= 1e-5
    # an export-safe build: standard cells only, whatever the target; the backend cannot be forced off the CPU
    safe = convattn.create_model("acmix_resnet26", target="CPU", export_safe=True, **kwargs)
    assert safe.form.export_safe and not safe.form.cpu_backend and not _cpu_cells(safe)
    assert safe.form == BuildForm("CPU", True, False)
    with pytest.raises(ValueError, match="cpu_backend=True needs target='CPU'"):
        convattn.create_model("acmix_resnet26", target="GPU", cpu_backend=True, **kwargs)


def _forms(net):
    return tuple((n, getattr(c, "depthwise_conv", None), getattr(c, "attn_impl", None), getattr(c, "fused", None))
                 for n, c in net.cells_and_names() if hasattr(c, "depthwise_conv") or hasattr(c, "attn_impl"))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_checkpoint_of_any_form_loads_into_every_other(name, tmp_path):
    """Save from each formulation, load into each other (create_model(pretrained=)): outputs equal."""
    overrides, side = FAMILIES[name]
    kwargs, (_, *size) = small_instance_kwargs(name, input_size=side, **overrides)
    size = tuple(size)
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3) + size).astype(np.float32))
        nets, seen = {}, set()
        for seed, t in enumerate(("Ascend", "CPU", "GPU")):
            ms.set_seed(seed)
            net = convattn.create_model(name, num_classes=10, target=t, **kwargs)
            if _forms(net) not in seen:  # targets with the same formulation share a form (e.g. SAN on GPU/Ascend)
                seen.add(_forms(net))
                nets[t] = net
        assert len(nets) >= 2
        assert all(n.target == t for t, n in nets.items())
        outs, paths = {}, {}
        shapes = {t: {p.name: tuple(p.shape) for p in net.get_parameters()} for t, net in nets.items()}
        for t, net in nets.items():
            net.set_train(False)
            outs[t] = net(x).asnumpy()
            paths[t] = str(tmp_path / f"{t}.ckpt")
            ms.save_checkpoint(net, paths[t])
        for src in nets:
            for dst in nets:
                if src == dst:
                    continue
                if dst == "Ascend":  # the user's path: a CPU/GPU checkpoint into create_model(target='Ascend')
                    net = convattn.create_model(name, num_classes=10, target=dst, pretrained=paths[src], **kwargs)
                    net.set_train(False)
                else:  # the same loader on the built network (saves a build)
                    net = nets[dst]
                    mapped = load_checkpoint(net, paths[src])["form_mapped"]
                    assert bool(mapped) == (shapes[src] != shapes[dst]), mapped
                assert _rel(net(x).asnumpy(), outs[src]) <= 1e-5, (src, dst)
    finally:
        ms.set_context(mode=previous)


def _tiny_tree(root, size=32, per_class=(2, 1)):
    """A 10-class ImageFolder tree with ``per_class`` (train, val) images of noise per class."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / str(c) / f"{i}.png")
    return root


def test_training_checkpoint_resumes_and_evaluates_in_another_form(tmp_path, capsys):
    """A training run of the CPU form (grouped conv path, fused kernels): its checkpoint resumes (weights,
    optimizer moments) and evaluates in the Ascend form; the evaluation equals the CPU form's."""
    from convattn.engine.config import load_config, validate
    from convattn.engine.optim import create_optimizer
    from convattn.engine.trainer import _load_state, build_model, run_eval, train

    data = _tiny_tree(tmp_path / "tree")
    base = {"dataset": "imagefolder", "data_dir": str(data), "num_classes": 10, "model": "acmix_resnet26",
            "model_kwargs": {"layers": [1, 1, 1, 1], "k_att": 3, "head": 2}, "image_size": 64, "crop_pct": 1.0,
            "batch_size": 10, "mode": 1, "opt": "momentum", "lr": 0.01, "min_lr": 0.0, "warmup_epochs": 0,
            "num_parallel_workers": 1, "log_interval": 1, "ckpt_dir": str(tmp_path / "run"), "epochs": 1,
            "ckpt_steps": 1}
    train(validate(load_config(None, dict(base, target="CPU"))))
    ckpt = str(tmp_path / "run" / "acmix_resnet26-1_1.ckpt")  # mid-epoch: step 2 is left to resume
    # the Ascend form takes the weights and the momentum of the grouped dep_conv, reshaped
    cfg = validate(load_config(None, dict(base, target="Ascend")))
    net = build_model(cfg)
    assert net.target == "Ascend"
    opt = create_optimizer(cfg, net.trainable_params(), np.full(2, 0.01, np.float32))
    from convattn.models.helpers import read_checkpoint
    _load_state(ckpt, read_checkpoint(ckpt), net, opt, None, None)
    raw = ms.load_checkpoint(ckpt)
    moments = {p.name: p for p in opt.get_parameters() if p.name.startswith("moments.")}
    dep = sorted(n for n in moments if n.endswith("dep_conv.weight"))
    assert dep and all(tuple(moments[n].shape) != tuple(raw[n].shape) for n in dep)
    for n in dep:
        np.testing.assert_array_equal(moments[n].asnumpy().ravel(), raw[n].asnumpy().ravel())
    # resume the run in the Ascend form, then evaluate the best checkpoint in both forms
    train(validate(load_config(None, dict(base, target="Ascend", resume=ckpt))))
    assert "epoch 1, step 1" in capsys.readouterr().out
    best = str(tmp_path / "run" / "acmix_resnet26_best.ckpt")
    metrics = {t: run_eval(validate(load_config(None, dict(base, target=t, ckpt=best)), for_training=False))
               for t in ("CPU", "Ascend")}
    assert metrics["CPU"]["top1"] == metrics["Ascend"]["top1"]
    assert abs(metrics["CPU"]["loss"] - metrics["Ascend"]["loss"]) <= 1e-5 * max(1.0, metrics["CPU"]["loss"])
