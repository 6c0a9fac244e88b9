"""Every distinct model code path trains through the engine (``convattn.engine.trainer.train``, the code
scripts/train.py runs) on the quickstart digits: a few AdamW/SGD steps at a small width; the training loss falls
and on the validation split the network beats its own initialisation (top-1 clearly above chance, or a lower loss).

One representative per code path:

* ``acmix_resnet26`` (ResNet bottleneck with the ACmix spatial layer) and ``resnet26`` (plain 3x3 conv);
  acmix_resnet38/50 and resnet38/50 differ only in depth (``layers``) and are covered by these.
* ``acmix_swin_tiny`` (Swin windows with the ACmix mixer); swin_tiny/small and acmix_swin_small share the
  Swin block, window attention and patch merging, and differ only in depth/width.
* ``acmix_pvt_tiny`` (PVT spatial-reduction attention + ACmix conv path); pvt_tiny/small and acmix_pvt_small
  differ only in depth/width (the plain-PVT attention is the ACmix attention's softmax path).
* ``san10_pairwise`` and ``san10_patchwise`` (the two SAM operators); san15/19 only add blocks.
* ``xvolution_resnet34`` with ``attn='pssa'`` and ``attn='sa'`` (the two X-volution attention branches);
  xvolution_resnet50 is the bottleneck layout of the same operator, and resnet34 the plain basic block.
* ``deit_tiny``, ``deit_tiny_relu``, ``deit_tiny_dw`` (softmax / ReLU-normalised / depth-wise attention
  cores); the deit_small* models differ only in width.
* ``swin_tiny_relu``, ``swin_tiny_dw`` (the dynamic-convolution cores inside Swin windows).

Three cases run only with ``-m slow`` (``_COVERED``): their networks have no device-dependent formulation (their
Ascend form is the CPU form), and ``tests/test_ascend.py::test_representative_audit_and_o2_digits_training``
trains the same network at the same small widths on digits by default (in float16 under O2, the stricter case)
and asserts that its loss falls; the engine loop they would add is the one every other case here runs.
Five more (``_PARTS_TRAINED_ELSEWHERE``) run only with ``-m slow`` because default tests train their parts:
pairwise SAN (tests/test_san.py's whole-network digits test), ACmix-PVT and ACmix-Swin (their Ascend
representatives, the CPU conv path in the ACmix-ResNet case, the Swin stages in swin_tiny_relu, the CPU softmax
attention in deit_tiny), ResNet-26 (the bottleneck in ACmix-ResNet, the 3x3 convolutions in X-volution's) and the
depth-wise DeiT (DeiT in deit_tiny, the core in swin_tiny_dw's representative); patchwise SAN, which does not learn
here yet (strict xfail), is slow as well.

32x32 digits do not fit every family's default strides/windows, so ``model_kwargs`` shrink them: Swin
``img_size=32, patch_size=2, window_size=4``; PVT ``img_size=32``; ACmix-ResNet and SAN need reflection padding
smaller than their last feature map, so they train on the digits upscaled to 64x64 with 3x3 windows.
"""
import csv
import math
import os

import pytest

from convattn.engine.config import validate
from convattn.engine.trainer import train
from workers import run_in_workers, unwrap

ADAMW = dict(opt="adamw", lr=1e-3, weight_decay=0.05, min_lr=1e-4)
SGD = dict(opt="momentum", lr=0.02, weight_decay=1e-4, min_lr=1e-4)
SWIN = dict(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=[2, 2, 1, 1], num_heads=[1, 2, 2, 4])
DEIT = dict(img_size=32, patch_size=4, embed_dim=48, depth=2)
VIT_ADAMW = dict(ADAMW, lr=2e-3, max_steps_per_epoch=20)  # a plain ViT needs more (cheap) steps to leave chance level
SAN = dict(layers=[1, 1, 1, 1, 1], kernels=[3, 3, 3, 3, 3], base_width=16, share_planes=4)
SAN_SGD = dict(SGD, max_steps_per_epoch=10)  # 15 steps leave both SANs at chance on the val split (10.03 %)
R1 = dict(layers=[1, 1, 1, 1])

# id: (model, model_kwargs, recipe, image size)
CASES = {
    "acmix_resnet26": ("acmix_resnet26", dict(R1, k_att=3), SGD, 64),
    "resnet26": ("resnet26", R1, SGD, 32),
    "acmix_swin_tiny": ("acmix_swin_tiny", SWIN, ADAMW, 32),
    "acmix_pvt_tiny": ("acmix_pvt_tiny", dict(img_size=32, depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128],
                                              num_heads=[1, 2, 4, 8]), ADAMW, 32),
    "san10_pairwise": ("san10_pairwise", SAN, SAN_SGD, 64),
    "san10_patchwise": ("san10_patchwise", SAN, SAN_SGD, 64),
    "xvolution_resnet34_pssa": ("xvolution_resnet34", R1, SGD, 32),
    "xvolution_resnet34_sa": ("xvolution_resnet34", dict(R1, attn="sa"), SGD, 32),
    "deit_tiny": ("deit_tiny", DEIT, VIT_ADAMW, 32),
    "deit_tiny_relu": ("deit_tiny_relu", DEIT, VIT_ADAMW, 32),
    "deit_tiny_dw": ("deit_tiny_dw", DEIT, VIT_ADAMW, 32),
    "swin_tiny_relu": ("swin_tiny_relu", SWIN, ADAMW, 32),
    "swin_tiny_dw": ("swin_tiny_dw", SWIN, ADAMW, 32),
}


def _evaluate_initialisation(cfg):
    """Val metrics of the network train() starts from (same seed, same builder, same val loader); setup_context
    reseeds, so this builds the same initial weights after train() has run."""
    from convattn.data import resolve_data_cfg
    from convattn.engine.trainer import build_loaders, build_model, evaluate, setup_context
    from convattn.models import get_model_cfg

    setup_context(cfg)
    net = build_model(cfg)
    _, make_val, _ = build_loaders(cfg, resolve_data_cfg(cfg, get_model_cfg(cfg.model)), 0, 1)
    return evaluate(net, make_val(), cfg.num_classes, False)


# measured: patchwise SAN (base_width 16) stays at chance on the val split after 30 SGD steps (10.03 %, val loss
# 2.90 vs 2.30 at init) while its training loss falls; its recipe here still has to be found
_NOT_YET = {"san10_patchwise"}


# case -> the representative of tests/test_ascend.py that trains its network on digits by default
_COVERED = {"deit_tiny_relu": "deit_tiny_relu", "swin_tiny_dw": "swin_tiny_dw",
            "xvolution_resnet34_pssa": "xvolution_resnet34"}

# case -> the default tests that train its parts (run with -m slow only): patchwise/pairwise SAN learn digits in
# tests/test_san.py's whole-network test; ACmix-PVT's Ascend form is O2-trained by its representative, its CPU
# grouped conv path by the acmix_resnet26 and acmix_swin_tiny cases here
_PARTS_TRAINED_ELSEWHERE = {
    "san10_pairwise": ("tests/test_san.py::test_san_network_trains_on_digits[pairwise]",),
    # the ACmix conv path on the CPU (grouped): acmix_resnet26; its Ascend form: the representative
    "acmix_pvt_tiny": ("tests/test_ascend.py::test_representative_audit_and_o2_digits_training[acmix_pvt_tiny]",
                       "acmix_resnet26", "deit_tiny"),
    # the Swin stages, windows and patch merging: swin_tiny_relu; the CPU softmax attention kernel: deit_tiny;
    # the conv path: acmix_resnet26; the whole network (Ascend form, O2): its representative
    "acmix_swin_tiny": ("tests/test_ascend.py::test_representative_audit_and_o2_digits_training[acmix_swin_tiny]",
                        "acmix_resnet26", "swin_tiny_relu", "deit_tiny"),
    # the bottleneck: acmix_resnet26; the plain 3x3 convolutions (GemmConv2d on the CPU): xvolution_resnet34_sa
    "resnet26": ("acmix_resnet26", "xvolution_resnet34_sa"),
    # the DeiT network and engine: deit_tiny; the depth-wise attention core: swin_tiny_dw's representative (its
    # Ascend form is its CPU form)
    "deit_tiny_dw": ("deit_tiny",
                     "tests/test_ascend.py::test_representative_audit_and_o2_digits_training[swin_tiny_dw]"),
}


def test_parts_of_slow_cases_are_trained_by_default():
    from convattn.bench.ascend_audit import REPRESENTATIVES
    for case, parts in _PARTS_TRAINED_ELSEWHERE.items():
        for part in parts:
            if part in CASES:
                assert part not in _COVERED and part not in _NOT_YET and part not in _PARTS_TRAINED_ELSEWHERE, part
            elif "[" in part:
                path, test = part.split("::")
                assert os.path.exists(path) and f"def {test.split('[')[0]}(" in open(path).read(), part
                param = test.split("[")[1].rstrip("]")
                assert "test_ascend" not in path or param in REPRESENTATIVES.values(), part
            else:
                raise AssertionError(part)


def _marks(case):
    if case in _NOT_YET:  # slow too: tests/test_san.py::test_san_network_trains_on_digits trains the same
        # operator by default, and a known failure need not cost every CI run half a minute
        return [pytest.mark.xfail(strict=True, reason="does not yet beat its initialisation on the val split at "
                                                      "this length"), pytest.mark.slow]
    return [pytest.mark.slow] if case in _COVERED or case in _PARTS_TRAINED_ELSEWHERE else []


def test_covered_cases_are_trained_by_the_ascend_representatives():
    """The slow-marked cases' networks are O2-trained on digits by default, at the same small configuration, and
    their Ascend form is their CPU form."""
    from convattn import create_model
    from convattn.bench.ascend_audit import REPRESENTATIVES, SMALL_CONFIGS
    for case, rep in _COVERED.items():
        model, kwargs, _, size = CASES[case]
        assert rep == model and rep in REPRESENTATIVES.values(), (case, rep)
        small, side = SMALL_CONFIGS[rep]
        assert side == size and {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()} == small, \
            (case, kwargs, small)
        nets = [create_model(model, num_classes=10, target=t, **small) for t in ("CPU", "Ascend")]
        assert [n.target for n in nets] == ["CPU", "Ascend"] and not nets[1].form.cpu_backend
        forms = [_kernel_agnostic(n) for n in nets]
        assert forms[0] == forms[1], f"{model} has a device-dependent form: train its CPU form here by default"


def _kernel_agnostic(net):
    """The network's signature with the CPU backend's fused cells (:mod:`convattn.cpu`) read as the standard
    cells they replace: ``FusedGELU`` (and the standard form's ``LeanGELU``) is an ``nn.GELU``, ``FusedLayerNorm`` an ``nn.LayerNorm``, ``Linear`` an
    ``nn.Dense``, a ``FusedBatchNorm2d`` with an activation the standard ``BatchNormAct2d`` (same value, gradient
    and parameters: tests/test_fused_gelu.py, tests/test_fused_norm.py), and their parameter-free kernel
    sub-cells (a ``Linear``'s ``bias_op`` and ``gemm_op``) are left out. The CPU-form
    family cases train through them by default; any other difference between the forms (a backend cell that
    stands for no MindSpore cell included) still fails the check."""
    from mindspore import nn
    from twins import network_signature
    replaced = {}  # cell name -> the MindSpore cell it stands for
    for name, cell in net.cells_and_names():
        # the CPU backend's cells, and the standard form's lean-gradient cells (a LeanGELU is an nn.GELU with a
        # backward that keeps only its input: tests/test_lean_grad.py)
        if type(cell).__module__.startswith(("convattn.cpu", "convattn.layers.lean_grad")):
            base = next(b for b in type(cell).__mro__ if b.__module__.startswith("mindspore.nn"))
            if base is not nn.Cell:
                with_act = issubclass(base, nn.BatchNorm2d) and getattr(cell, "act", None) is not None
                replaced[name] = "BatchNormAct2d" if with_act else base.__name__
    cells, params = network_signature(net)
    kernel_parts = tuple(f"{n}." for n in replaced)  # their sub-cells: a Linear's bias_op and gemm_op
    cells = tuple((n, replaced.get(n, c)) for n, c in cells if not n.startswith(kernel_parts))
    return cells, params


def _config(case, data_dir, out):
    model, kwargs, opt, size = CASES[case]
    opt = dict(opt)
    steps = opt.pop("max_steps_per_epoch", 5)
    return validate(dict(
        dataset="digits", data_dir=data_dir, num_classes=10, image_size=size, crop_pct=1.0, interpolation="bilinear",
        scale=[1.0, 1.0], hflip=0.0, model=model, model_kwargs=kwargs, drop_path_rate=None, batch_size=32,
        epochs=3, max_steps_per_epoch=steps, label_smoothing=0.0, val_interval=0, warmup_epochs=0, mode=0, seed=0, num_parallel_workers=1,
        log_interval=1000, ckpt_dir=str(out), keep_checkpoint_max=1, ckpt_interval=2, **opt))


_DEFAULT_CASES = [c for c in CASES if not _marks(c)]


@pytest.fixture(scope="module")
def default_runs(digits32, tmp_path_factory):
    """The default cases trained in two worker processes (tests/workers.py): ``{case: (metrics or exception,
    cfg)}``."""
    base = tmp_path_factory.mktemp("families")
    cfgs = {case: _config(case, digits32, base / case) for case in _DEFAULT_CASES}
    results = run_in_workers(train, {case: ((cfg,), {}) for case, cfg in cfgs.items()})
    return {case: (results[case], cfgs[case]) for case in cfgs}


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c)) for c in CASES])
def test_family_trains_on_digits(case, digits32, tmp_path, request):
    if case in _DEFAULT_CASES:
        metrics, cfg = request.getfixturevalue("default_runs")[case]
        unwrap(metrics)
        out = cfg.ckpt_dir
    else:
        out = tmp_path / case
        cfg = _config(case, digits32, out)
        metrics = train(cfg)
    with open(os.path.join(out, "train_log.csv"), newline="") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0], f"{case}: mean train loss did not fall from epoch 1 to epoch 3: {losses}"
    assert metrics["n"] == 359  # evaluated on the whole val split
    # learned what generalises, not just moved: on the held-out digits the trained network beats the same network at
    # its seeded initialisation: its top-1 is clearly above chance (10 classes: 10 %, binomial spread 1.6 % on 359
    # images), or its val loss is lower. Either alone is not enough at this length: a few dozen steps leave the
    # slowest ViTs at chance-level top-1 while their loss falls, and BatchNorm running statistics that lag the
    # weights inflate the eval loss of CNNs whose top-1 already rose
    if metrics["top1"] < 15.0:  # (the initialisation is evaluated only then: it costs a compile)
        untrained = _evaluate_initialisation(cfg)
        assert metrics["loss"] < untrained["loss"], (
            f"{case}: val top-1 {metrics['top1']:.2f} % (chance 10 %) and val loss {metrics['loss']:.4f} after "
            f"training vs {untrained['loss']:.4f} at initialisation")
