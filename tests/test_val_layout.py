"""ImageNet's flat validation folder -> class folders of links (scripts/imagenet_val_layout.py); flat-val error."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convattn.data import list_image_folder
from convattn.data.imagenet import ValLayoutError, make_val_layout

REPO = Path(__file__).resolve().parents[1]
WNIDS = ["n01440764", "n01443537", "n01484850"]


def _script():
    spec = importlib.util.spec_from_file_location("val_layout", REPO / "scripts" / "imagenet_val_layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture
def flat(tmp_path):
    """train/<wnid>/ and a flat val/ of 6 images, image i of class i % 3, plus Kaggle's CSV and the devkit's txt."""
    for w in WNIDS:
        (tmp_path / "train" / w).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / w / "a.JPEG")
    (tmp_path / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for i in range(6):
        name = f"ILSVRC2012_val_{i + 1:08d}"
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "val" / f"{name}.JPEG")
        rows.append(f"{name},{WNIDS[i % 3]} 1 2 3 4 {WNIDS[i % 3]} 5 6 7 8")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "ground_truth.txt").write_text("".join(f"{i % 3 + 1}\n" for i in range(6)))
    (tmp_path / "synsets.txt").write_text("".join(f"{w} some name, other\n" for w in WNIDS))
    return tmp_path


def test_flat_val_error_names_the_script(flat):
    with pytest.raises(ValueError, match=r"holds 6 images directly.*scripts/imagenet_val_layout.py --val"):
        list_image_folder(str(flat / "val"))


def test_training_refuses_a_flat_val_before_the_first_epoch(flat):
    from types import SimpleNamespace

    from convattn.engine.trainer import build_loaders
    cfg = SimpleNamespace(deterministic=True, num_parallel_workers=1, data_dir=str(flat), train_split="train",
                          val_split="val", num_classes=3)
    with pytest.raises(ValueError, match="imagenet_val_layout.py"):
        build_loaders(cfg, {}, 0, 1)


def test_dry_run_then_links_in_place(flat, capsys):
    main = _script()
    args = ["--val", str(flat / "val"), "--labels", str(flat / "LOC_val_solution.csv")]
    before = sorted(os.listdir(flat / "val"))
    assert main(args + ["--dry_run"]) == 0
    assert "would create 6 links" in capsys.readouterr().out and sorted(os.listdir(flat / "val")) == before
    assert main(args) == 0
    for w in WNIDS:
        assert all(os.path.islink(flat / "val" / w / n) for n in os.listdir(flat / "val" / w))
    _, train_c2i, _ = list_image_folder(str(flat / "train"))
    samples, _, _ = list_image_folder(str(flat / "val"), train_c2i)  # the flat files are not read twice
    assert [(os.path.basename(p), c) for p, c in samples] == sorted(
        [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", i % 3) for i in range(6)], key=lambda t: (t[1], t[0]))
    assert np.asarray(Image.open(samples[0][0])).mean() == 0  # the link reaches the image
    assert main(args) == 0 and "0 links" in capsys.readouterr().out.splitlines()[-2]  # a rerun changes nothing


def test_devkit_labels_and_bad_input(flat, capsys):
    out = flat / "val_classes"
    common = ["--val", str(flat / "val"), "--labels", str(flat / "ground_truth.txt"), "--out", str(out)]
    main = _script()
    assert main(common) == 1 and "--classes FILE" in capsys.readouterr().err  # integer labels need the class list
    assert main(common + ["--classes", str(flat / "synsets.txt"), "--index_base", "1"]) == 0
    assert sorted(os.listdir(out)) == WNIDS and sorted(os.listdir(out / WNIDS[1])) == [
        "ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000005.JPEG"]
    # the devkit's meta.mat gives the ILSVRC2012_ID order (here the reverse of the sorted wnids; 1001+ are not classes)
    from scipy.io import savemat
    rows = [(1, WNIDS[2], 0), (2, WNIDS[1], 0), (3, WNIDS[0], 0), (1001, "n00001740", 5)]
    synsets = np.zeros((4, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for i, (k, w, nc) in enumerate(rows):
        synsets[i, 0] = (np.array([[k]], np.uint16), np.array([w]), np.array([[nc]], np.uint16))
    savemat(str(flat / "meta.mat"), {"synsets": synsets})
    assert main(common[:-1] + [str(flat / "val_meta"), "--classes", str(flat / "meta.mat")]) == 0
    assert sorted(os.listdir(flat / "val_meta" / WNIDS[2])) == ["ILSVRC2012_val_00000001.JPEG",
                                                               "ILSVRC2012_val_00000004.JPEG"]
    (flat / "short.txt").write_text("1\n2\n")
    with pytest.raises(ValLayoutError, match="2 labels .* 6 images"):
        make_val_layout(str(flat / "val"), str(flat / "short.txt"), str(flat / "x"), dry_run=True)
    # an existing entry that is not the expected link stops the run before anything is written
    os.remove(out / WNIDS[0] / "ILSVRC2012_val_00000001.JPEG")
    (out / WNIDS[0] / "ILSVRC2012_val_00000001.JPEG").write_text("mine")
    with pytest.raises(ValLayoutError, match="1 entries already exist"):
        make_val_layout(str(flat / "val"), str(flat / "LOC_val_solution.csv"), str(out))
    assert not os.path.exists(flat / "x")
