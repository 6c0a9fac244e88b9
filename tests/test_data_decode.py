"""The reader's decode='cpp' option (checked bytes to the C++ vision.Decode): same pixels and order as the Pillow
default, same seeded augmentation, and the corrupt-file policy (with bad_images: stop, a truncated or undecodable
JPEG stops the run with its path)."""
import io

import numpy as np
import pytest
from PIL import Image

from convattn.data import create_loader, eval_transforms, train_transforms
from convattn.data.dataset import read_encoded

MEAN = STD = (0.5, 0.5, 0.5)


def _jpeg_tree(root, n=3):
    rng = np.random.RandomState(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = rng.randint(0, 256, (24 + 4 * i, 30, 3)).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.JPEG", quality=90)
    return root


def _batches(root, tf, decode, **kw):
    ds, _, _ = create_loader(str(root), tf, 3, kw.pop("shuffle", False), False, decode=decode, **kw)
    return [b for b in ds.create_tuple_iterator(num_epochs=1, output_numpy=True)]


def test_cpp_decode_equals_pillow_and_replays_the_seed(tmp_path):
    root = _jpeg_tree(tmp_path / "t")
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).convert("CMYK").save(root / "a" / "cmyk.jpg")  # Pillow path
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(root / "b" / "png_inside.JPEG", format="PNG")
    with open(root / "b" / "9.jpg", "wb") as f:  # trailing padding after the end-of-image marker is fine
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 20, 3), 30, np.uint8)).save(buf, format="JPEG")
        f.write(buf.getvalue() + b"\x00" * 16)
    tf = eval_transforms(16, MEAN, STD, "bilinear", 1.0)
    cpp, pil = _batches(root, tf, "cpp"), _batches(root, tf, "pil")
    assert len(cpp) == len(pil) == 3
    for (xc, yc), (xp, yp) in zip(cpp, pil):
        np.testing.assert_array_equal(xc, xp)
        np.testing.assert_array_equal(yc, yp)
    # training: the same seed gives the same shuffled, augmented batches (what exact resume replays)
    ttf = lambda: train_transforms(16, MEAN, STD, "bicubic", auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25)
    one, two = (_batches(root, ttf(), "cpp", shuffle=True, seed=7) for _ in range(2))
    for (x1, y1), (x2, y2) in zip(one, two):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match="decode must be"):
        create_loader(str(root), tf, 2, False, False, decode="gpu")


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_cpp_path_stops_on_a_bad_jpeg_with_its_path(tmp_path, damage):
    root = _jpeg_tree(tmp_path / "t")
    bad = root / "b" / "1.JPEG"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "text": b"not an image at all", "empty": b""}[damage])
    with pytest.raises(Exception) as err:
        _batches(root, eval_transforms(16, MEAN, STD, "bilinear", 1.0), "cpp", bad_images="stop")
    assert str(bad) in str(err.value) and "cannot decode" in str(err.value)
    if damage == "truncated":  # the check in the source, not the C++ decoder (which would fill it with grey)
        with pytest.raises(Exception, match="truncated"):
            read_encoded(str(bad))
