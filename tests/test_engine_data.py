"""ImageFolder pipeline: transforms from the model's default config, sharding, digits tree, bad files."""
import numpy as np
import pytest
from PIL import Image

from convattn.data import (CorruptImageError, create_loader, eval_transforms, list_image_folder, resolve_data_cfg,
                           train_transforms, write_digits_imagefolder)


def _tree(root, n=4, size=20):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((size, size + 4, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_eval_and_train_batches(tmp_path):
    root = _tree(tmp_path / "t")
    from convattn import get_model_cfg
    dc = resolve_data_cfg({"image_size": 16, "crop_pct": None, "interpolation": None, "mean": None, "std": None},
                          get_model_cfg("van_b0"))
    assert dc["crop_pct"] == 0.9 and dc["mean"] == (0.5, 0.5, 0.5) and dc["interpolation"] == "bicubic"
    ds, c2i, n = create_loader(str(root), eval_transforms(**dc), 3, False, False)
    assert c2i == {"a": 0, "b": 1} and n == 8
    batches = list(ds.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert [b[0].shape for b in batches] == [(3, 3, 16, 16)] * 2 + [(2, 3, 16, 16)]
    assert batches[0][0].dtype == np.float32 and np.isclose(batches[0][0][0].min(), -1.0, atol=1e-3)
    tf = train_transforms(16, dc["mean"], dc["std"], "bicubic", color_jitter=0.4, auto_augment="rand-m9-n2",
                          re_prob=0.5)
    ds, _, _ = create_loader(str(root), tf, 4, True, True, seed=3)
    imgs = [b[0] for b in ds.create_tuple_iterator(num_epochs=1, output_numpy=True)]
    assert len(imgs) == 2 and imgs[0].shape == (4, 3, 16, 16)
    ds2, _, _ = create_loader(str(root), tf, 4, True, True, seed=3)
    np.testing.assert_array_equal(imgs[0], next(ds2.create_tuple_iterator(num_epochs=1, output_numpy=True))[0])


def test_sharding_by_rank_is_disjoint(tmp_path):
    root = _tree(tmp_path / "t")
    tf = eval_transforms(8, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)
    seen = []
    for rank in range(2):
        ds, _, _ = create_loader(str(root), tf, 1, False, False, num_shards=2, shard_id=rank)
        seen.append(ds.get_dataset_size())
    assert seen == [4, 4]


def test_non_image_files_skipped_with_count(tmp_path, caplog):
    root = _tree(tmp_path / "t")
    (root / "a" / "README.txt").write_text("notes")
    (root / "b" / ".DS_Store").write_bytes(b"\x00")
    with caplog.at_level("WARNING", logger="convattn.data"):
        samples, _, skipped = list_image_folder(str(root))
    assert skipped == 2 and len(samples) == 8
    assert "skipped 2 non-image file(s)" in caplog.text


def test_corrupt_image_fails_with_its_path(tmp_path):
    root = _tree(tmp_path / "t")
    bad = root / "b" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    tf = eval_transforms(8, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)
    ds, _, _ = create_loader(str(root), tf, 2, False, False)
    with pytest.raises(Exception) as err:
        list(ds.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert str(bad) in str(err.value) and "cannot decode" in str(err.value)
    from convattn.data.dataset import decode_image
    with pytest.raises(CorruptImageError, match=str(bad)):
        decode_image(str(bad))


def test_digits_tree(tmp_path):
    counts = write_digits_imagefolder(tmp_path / "d", size=16)
    assert counts == {"train": 1438, "val": 359}
    samples, c2i, _ = list_image_folder(str(tmp_path / "d" / "val"))
    assert len(c2i) == 10 and Image.open(samples[0][0]).size == (16, 16)
    assert Image.open(samples[0][0]).mode == "RGB"
    again = write_digits_imagefolder(tmp_path / "d", size=16)  # complete tree is reused
    assert again == counts
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not a digits tree"):
        write_digits_imagefolder(tmp_path / "other")
