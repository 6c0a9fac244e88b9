"""scripts/infer.py: top-k predictions from a checkpoint and from a MINDIR, class names, bad input."""
import csv
import json
import os

import numpy as np
import pytest
import mindspore as ms

from convattn.data.class_names import (CLASS_NAMES_FILE, imagenet_class_names, imagenet_synsets, read_class_names,
                                       write_class_names)
from convattn.deploy.infer import InferError, Predictor, list_images, write_predictions
from convattn.deploy.infer_cli import main as infer_main
from convattn.models import create_model
from convattn.models.helpers import CheckpointMismatchError
from convattn.models.registry import small_instance_kwargs

TINY = small_instance_kwargs("van_b0")[0]  # {depths: (1, 1, 1, 1)}, as the run's config.yaml below says


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits32):
    """A 10-class tiny van_b0 checkpoint in a 'training run' folder with class_names.json and config.yaml."""
    run = tmp_path_factory.mktemp("run")
    ms.set_seed(0)
    net = create_model("van_b0", num_classes=10, **TINY)
    ckpt = str(run / "van_b0_best.ckpt")
    meta = {"train.epoch": 3, "train.step": 7, "train.global_step": 21, "train.best_acc": 50.0}
    ms.save_checkpoint(net, ckpt, append_dict=meta)  # a training checkpoint: weights + the engine's position
    write_class_names(str(run), {f"digit{i}": i for i in range(10)})
    (run / "config.yaml").write_text("model: van_b0\nnum_classes: 10\nmodel_kwargs: {depths: [1, 1, 1, 1]}\n"
                                     "image_size: 64\ncrop_pct: null\n")  # trained at 64: inferred at 64
    images = [os.path.join(digits32, "val", str(c), sorted(os.listdir(os.path.join(digits32, "val", str(c))))[0])
              for c in range(3)]
    return {"net": net, "ckpt": ckpt, "run": str(run), "images": images}


def _reference_probs(net, path, size=224):
    """One image at a time through the model's eval transform (van_b0: bicubic, crop_pct 0.9, mean/std 0.5)."""
    from mindspore.dataset.transforms import Compose

    from convattn.data import eval_transforms
    from convattn.data.dataset import decode_image
    from convattn.models import get_model_cfg
    cfg = get_model_cfg("van_b0")
    x = Compose(eval_transforms(size, cfg["mean"], cfg["std"], cfg["interpolation"], cfg["crop_pct"]))(decode_image(path))
    logits = net(ms.Tensor(x[None].astype(np.float32))).asnumpy()[0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _check_topk(r, ref, atol):
    idx = [i for i, _, _ in r["topk"]]
    np.testing.assert_allclose([p for *_, p in r["topk"]], ref[idx], atol=atol)
    assert r["topk"][0][2] == pytest.approx(ref.max(), abs=atol)  # the top-1 is the reference's most likely class
    assert all(a[2] >= b[2] for a, b in zip(r["topk"], r["topk"][1:]))


def test_checkpoint_predictions_names_and_unreadable_image(trained, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    inputs = [trained["images"][0], str(bad), trained["images"][1], trained["images"][2]]
    pred = Predictor(model="van_b0", ckpt=trained["ckpt"], batch_size=2, log=lambda *_: None)
    assert pred.num_classes == 10 and pred.names_source.endswith(CLASS_NAMES_FILE)  # config.yaml + class_names.json
    assert pred.image_hw == (64, 64) and pred.data_cfg["crop_pct"] == 0.9  # the run's size, the model's crop
    res = pred.predict(inputs, topk=3)
    assert [r["status"] for r in res] == ["ok", "error", "ok", "ok"]
    assert str(bad) in res[1]["error"]
    trained["net"].set_train(False)
    for r in (res[0], res[2], res[3]):
        _check_topk(r, _reference_probs(trained["net"], r["path"], size=64), 1e-5)
        assert [n for _, n, _ in r["topk"]] == [f"digit{i}" for i, _, _ in r["topk"]]
    # the command line (PYNATIVE: no graph compile): prints per image, writes CSV, reports the bad file, exits 0
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    assert infer_main(["--ckpt", trained["ckpt"], "--topk", "2", "--out", str(out_csv),  # config.yaml names the model
                       "--batch_size", "4", "--mode", "1"] + inputs) == 0
    printed = capsys.readouterr()
    assert "digit" in printed.out and f"{bad}: ERROR" in printed.out and "1 of 4 image(s)" in printed.err
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 3 * 2 + 1 and rows[0]["name"] == res[0]["topk"][0][1]
    assert [r["status"] for r in rows].count("error") == 1 and str(bad) in rows[2]["error"]
    write_predictions(res, str(out_json))
    data = json.load(open(out_json))
    assert data[0]["topk"][0]["name"] == res[0]["topk"][0][1] and str(bad) in data[1]["error"]


def test_checkpoint_of_another_model_fails_with_the_mismatch_error(trained, tmp_path, capsys):
    other = {"depths": [1, 1, 1, 2]}  # another architecture than the checkpoint's (cheaper to build than van_b1)
    with pytest.raises(CheckpointMismatchError, match="does not match"):
        Predictor(model="van_b0", ckpt=trained["ckpt"], model_kwargs=other, log=lambda *_: None)
    assert infer_main(["--model", "van_b0", "--ckpt", trained["ckpt"], "--model_kwargs", json.dumps(other),
                       trained["images"][0]]) == 1
    assert "does not match" in capsys.readouterr().err


def test_mindir_at_its_own_size_with_fixed_batch(trained, tmp_path):
    from convattn.deploy import export_model

    out = tmp_path / "exp"
    export_model("van_b0", ckpt=trained["ckpt"], fmt="MINDIR", out_dir=str(out), batch=2, image_size=(96, 96),
                 model_kwargs=TINY, log=lambda *_: None)
    mindir = str(out / "van_b0.mindir")
    with pytest.raises(InferError, match="exported from van_b0"):
        Predictor(model="van_b1", mindir=mindir)
    said = []
    pred = Predictor(mindir=mindir, log=said.append)
    assert pred.image_hw == (96, 96) and pred.batch_size == 2 and pred.num_classes == 10
    assert len([m for m in said if "96x96" in m and "64x64" in m]) == 1  # said once (the run's size is 64)
    assert pred.names_source.endswith(CLASS_NAMES_FILE)  # found beside the exported checkpoint
    res = pred.predict(trained["images"], topk=2)  # 3 images through a batch-2 graph: the last batch is padded
    assert [r["status"] for r in res] == ["ok"] * 3 and len(said) == 1
    trained["net"].set_train(False)
    for r in res:
        _check_topk(r, _reference_probs(trained["net"], r["path"], size=96), 1e-5)


def test_inputs_and_class_name_sources(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.jpg", "notes.txt"):
        (tmp_path / "d" / name).write_bytes(b"x")
    assert list_images([str(tmp_path / "d")]) == [str(tmp_path / "d" / "b.png"), str(tmp_path / "d" / "sub" / "a.jpg")]
    with pytest.raises(InferError, match="does not exist"):
        list_images([str(tmp_path / "missing.jpg")])
    with pytest.raises(InferError, match="either a checkpoint"):
        Predictor(model="van_b0")
    with pytest.raises(InferError, match="needs --model"):
        Predictor(ckpt=str(tmp_path / "no_run_config.ckpt"))
    # ImageNet-1k's names ship with the package: 1,000 sorted WordNet ids, index order of a train/ tree
    syn = imagenet_synsets()
    assert len(syn) == 1000 and [w for w, _ in syn] == sorted(w for w, _ in syn) and len({w for w, _ in syn}) == 1000
    names = imagenet_class_names()
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
    write_class_names(str(tmp_path), {"cat": 1, "dog": 0})
    assert read_class_names(str(tmp_path / CLASS_NAMES_FILE)) == ["dog", "cat"]
    with pytest.raises(InferError, match="csv or json"):
        write_predictions([], str(tmp_path / "p.txt"))
