"""The shipped ImageNet recipes: every family has an Ascend and a GPU config that validates and states the
official recipe (checked against the table below, written from model-facts / the upstream scripts), and the
repeated-augmentation loader the DeiT / PVT recipes rely on. No training here (fast)."""
import glob
import os

import numpy as np
import pytest

from conftest import REPO
from convattn.engine.config import load_config, validate
from convattn.engine.scheduler import build_lr_schedule

_SGD_ACMIX = dict(opt="momentum", lr_peak=0.1, global_batch=128, epochs=90, warmup_epochs=5, warmup_lr=0.025,
                  weight_decay=1e-4, label_smoothing=0.1, label_smoothing_mode="wrong_classes", mixup=0.0,
                  aug_repeats=1, ema=False)
_SGD_SAN = dict(opt="momentum", lr_peak=0.1, global_batch=256, epochs=100, warmup_epochs=0, weight_decay=1e-4,
                label_smoothing=0.1, label_smoothing_mode="wrong_classes", mixup=0.0, aug_repeats=1, ema=False)
_SGD_RESNET = dict(opt="momentum", lr_peak=0.1, global_batch=256, epochs=90, warmup_epochs=0, weight_decay=1e-4,
                   label_smoothing=0.0, mixup=0.0, cutmix=0.0, auto_augment=None, aug_repeats=1, ema=False)
_TIMM_AUG = dict(mixup=0.8, cutmix=1.0, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, label_smoothing=0.1,
                 label_smoothing_mode="standard", opt="adamw", weight_decay=0.05, global_batch=1024, epochs=300)
_SWIN = dict(_TIMM_AUG, lr_peak=5e-4 * 1024 / 512, warmup_epochs=20, warmup_lr=5e-7 * 2, min_lr=5e-6 * 2,
             clip_grad=5.0, aug_repeats=1, ema=False)
_PVT = dict(_TIMM_AUG, lr_peak=5e-4 * 1024 / 512, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5, clip_grad=0.0,
            aug_repeats=3, ema=False, drop_path_rate=0.1)
_DEIT = dict(_TIMM_AUG, lr_peak=1e-3, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5, aug_repeats=3, ema=True,
             ema_decay=0.99996, drop_path_rate=0.1)

RECIPES = {
    **{f"acmix/{m}": _SGD_ACMIX for m in ("acmix_resnet26", "acmix_resnet38", "acmix_resnet50")},
    **{f"resnet/{m}": _SGD_ACMIX for m in ("resnet26", "resnet38", "resnet50")},
    "acmix/acmix_swin_tiny": dict(_SWIN, drop_path_rate=0.2), "acmix/acmix_swin_small": dict(_SWIN, drop_path_rate=0.3),
    "swin/swin_tiny": dict(_SWIN, drop_path_rate=0.2), "swin/swin_small": dict(_SWIN, drop_path_rate=0.3),
    "swin/swin_tiny_relu": dict(_SWIN, drop_path_rate=0.2), "swin/swin_tiny_dw": dict(_SWIN, drop_path_rate=0.2),
    **{f"{fam}/{m}": _PVT for fam, m in (("acmix", "acmix_pvt_tiny"), ("acmix", "acmix_pvt_small"),
                                         ("pvt", "pvt_tiny"), ("pvt", "pvt_small"))},
    **{f"san/san{d}_{t}": _SGD_SAN for d in (10, 15, 19) for t in ("pairwise", "patchwise")},
    **{f"xvolution/{m}": _SGD_RESNET for m in ("xvolution_resnet34", "xvolution_resnet50")},
    "resnet/resnet34": _SGD_RESNET,
    **{f"deit/{m}": _DEIT for m in ("deit_tiny", "deit_small", "deit_tiny_relu", "deit_tiny_dw", "deit_small_relu",
                                    "deit_small_dw")},
}
DEVICES = {"ascend": "Ascend", "gpu": "GPU"}


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    (root / "train").mkdir()
    (root / "val").mkdir()
    return str(root)


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_every_recipe_ships_validates_and_states_the_official_recipe(device, fake_imagenet):
    problems = []
    for key, want in RECIPES.items():
        fam, model = key.split("/")
        path = REPO / "configs" / fam / f"{model}_imagenet_{device}.yaml"
        if not path.is_file():
            problems.append(f"missing {path.relative_to(REPO)}")
            continue
        raw = load_config(str(path))
        raw["data_dir"] = fake_imagenet
        cfg = validate(raw)
        text = path.read_text()
        assert text.startswith("# ") and "Global batch" in text and "Launch:" in text, path  # documented
        got = dict(cfg)
        devices = 8
        got["global_batch"] = cfg.batch_size * devices * cfg.accumulation_steps  # as the trainer counts it
        got["lr_peak"] = float(build_lr_schedule(cfg, 10, got["global_batch"]).max())
        for k, v in want.items():
            ok = np.isclose(got[k], v, rtol=1e-6) if isinstance(v, float) else got[k] == v
            if not ok:
                problems.append(f"{path.name}: {k} = {got[k]!r}, official recipe says {v!r}")
        if cfg.model != model or cfg.device_target != DEVICES[device] or cfg.num_classes != 1000:
            problems.append(f"{path.name}: model/device/classes {cfg.model}/{cfg.device_target}/{cfg.num_classes}")
        if cfg.scheduler != "cosine" or cfg.lr_scale != "linear":
            problems.append(f"{path.name}: scheduler {cfg.scheduler}, lr_scale {cfg.lr_scale}")
    assert not problems, "\n".join(problems)


def test_no_unexpected_recipe_files():
    """Every imagenet config is either in the table above or a VAN recipe (tested by the engine tests)."""
    files = glob.glob(str(REPO / "configs" / "*" / "*_imagenet_*.yaml"))
    known = {f"{fam}/{m}_imagenet_{d}.yaml" for fam_m in RECIPES for fam, m in [fam_m.split("/")] for d in DEVICES}
    extra = [os.path.relpath(f, REPO / "configs") for f in files]
    extra = [f for f in extra if f not in known and not f.startswith("van/")]
    assert not extra, f"configs not covered by the recipe table: {extra}"


def _colour_tree(root, n_per_class=3, classes=2):
    """Tiny ImageFolder whose image i is a solid grey of value 10*i (so a pixel identifies the file)."""
    from PIL import Image
    i = 0
    for c in range(classes):
        d = root / str(c)
        d.mkdir(parents=True)
        for _ in range(n_per_class):
            Image.new("RGB", (4, 4), (10 * i,) * 3).save(d / f"{i}.png")
            i += 1
    return i


def _ids(dataset):
    return [int(img[0, 0, 0]) // 10 for batch in dataset.create_tuple_iterator(output_numpy=True) for img in batch[0]]


def test_aug_repeats_deals_repeated_copies_to_ranks(tmp_path):
    from mindspore.dataset import vision
    from convattn.data import create_loader
    n = _colour_tree(tmp_path / "t", n_per_class=4)  # 8 images
    tf = [vision.HWC2CHW()]
    ranks = [_ids(create_loader(str(tmp_path / "t"), tf, 1, True, False, 1, num_shards=2, shard_id=r, seed=5,
                                aug_repeats=3)[0]) for r in range(2)]
    assert [len(r) for r in ranks] == [n // 2, n // 2]  # epoch length unchanged
    merged = [x for pair in zip(*ranks) for x in pair]  # round-robin order = the repeated permutation
    assert merged == list(np.repeat(merged[::3][:3], 3))[:n]  # each image 3x in a row, dealt across ranks
    assert len(set(merged)) == 3 and ranks[0][0] == ranks[1][0]  # copies of one image on both ranks
    # same seed replays the same epoch; a new seed gives a new order
    again = _ids(create_loader(str(tmp_path / "t"), tf, 1, True, False, 1, num_shards=2, shard_id=0, seed=5,
                               aug_repeats=3)[0])
    other = [_ids(create_loader(str(tmp_path / "t"), tf, 1, True, False, 1, seed=s, aug_repeats=3)[0])
             for s in (6, 7, 8)]
    assert again == ranks[0] and any(o[::3] != merged[::3][:3] for o in other)
    single = _ids(create_loader(str(tmp_path / "t"), tf, 4, True, False, 1, seed=5, aug_repeats=2)[0])
    assert len(single) == n and single[0::2] == single[1::2]  # one rank: the copies sit in the same batch
    with pytest.raises(ValueError, match="aug_repeats must be >= 1"):
        create_loader(str(tmp_path / "t"), tf, 1, True, False, 1, aug_repeats=0)


def test_aug_repeats_config_key():
    cfg = validate({"dataset": "digits", "num_classes": 10, "model": "van_b0", "aug_repeats": 3})
    assert cfg.aug_repeats == 3
    from convattn.engine.config import ConfigError
    with pytest.raises(ConfigError, match="'aug_repeats' must be > 0"):
        validate({"dataset": "digits", "num_classes": 10, "model": "van_b0", "aug_repeats": 0})
