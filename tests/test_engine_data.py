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


def test_corrupt_image_policy_skip_counts_stop_names_the_path(tmp_path):
    from convattn.data import BadImageLog
    root = _tree(tmp_path / "t")
    tf = eval_transforms(8, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)
    good = [b for b in create_loader(str(root), tf, 2, False, False)[0].create_tuple_iterator(
        num_epochs=1, output_numpy=True)]
    bad = root / "b" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # skip (the default): the same number of samples, the bad one replaced by the next, counted once per read
    log = BadImageLog()
    ds, _, _ = create_loader(str(root), tf, 2, False, False, bad_log=log)
    batches = list(ds.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert sum(len(y) for _, y in batches) == sum(len(y) for _, y in good)
    events = log.take()
    assert [p for p, _ in events] == [str(bad)] and "cannot decode" in events[0][1] and log.take() == []
    flat = np.concatenate([x for x, _ in batches])
    ref = np.concatenate([x for x, _ in good])
    assert np.array_equal(flat[6], ref[7])  # sample 6 (b/2.png) is replaced by sample 7 (b/3.png)
    # stop: the first bad file ends the iteration with its path
    ds, _, _ = create_loader(str(root), tf, 2, False, False, bad_images="stop")
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
