"""The quickstart data set: scikit-learn's bundled handwritten digits written once as an ImageFolder tree.

``sklearn.datasets.load_digits`` ships inside the scikit-learn wheel (1,797 8x8 grey images, 10
classes, values 0..16), so the quickstart trains on real data with no download. The images are
upscaled to ``size`` x ``size`` RGB PNGs (bicubic) and split per class with a fixed seed, so every
machine writes the same tree::

    root/train/<0..9>/<index>.png
    root/val/<0..9>/<index>.png
"""
import re
from pathlib import Path

import numpy as np

from ..utils.fsio import atomic_directory

__all__ = ["write_digits_imagefolder", "digits_tree_ready", "digits_tree_size", "DIGITS_CLASSES"]

DIGITS_CLASSES = tuple(str(i) for i in range(10))
_MARKER = ".convattn_digits_complete"


def digits_tree_ready(root) -> bool:
    """True when ``root`` holds a complete tree written by :func:`write_digits_imagefolder`."""
    return (Path(root) / _MARKER).is_file()


def digits_tree_size(root):
    """The image side a complete digits tree was written at (from its marker file), or None."""
    try:
        text = (Path(root) / _MARKER).read_text()
    except OSError:
        return None
    m = re.search(r"size=(\d+)", text)
    return int(m.group(1)) if m else None


def write_digits_imagefolder(root, size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                             overwrite: bool = False) -> dict:
    """Write the digits as ``root/{train,val}/<class>/<i>.png``; returns ``{'train': n, 'val': n}``.

    The tree is built in a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a half-written tree that looks complete. An existing complete tree is kept unless
    ``overwrite``.
    """
    from PIL import Image
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is in requirements.txt
        raise ImportError("the quickstart digits need scikit-learn: pip install scikit-learn") from exc
    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    root = Path(root)
    if digits_tree_ready(root) and not overwrite:
        return _count(root)
    if root.exists() and any(root.iterdir()) and not digits_tree_ready(root) and not overwrite:
        raise FileExistsError(f"{root} exists and is not a digits tree written by convattn; "
                              "choose an empty or missing folder (or pass overwrite=True)")
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (1797, 8, 8), 0..16
    labels = digits.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    with atomic_directory(root) as tmp:
        for cls in range(10):
            idx = np.flatnonzero(labels == cls)
            idx = idx[rng.permutation(len(idx))]
            n_val = int(round(len(idx) * val_fraction))
            for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
                folder = Path(tmp) / split / str(cls)
                folder.mkdir(parents=True, exist_ok=True)
                for i in part:
                    grey = np.clip(images[i] * (255.0 / 16.0), 0, 255).astype(np.uint8)
                    img = Image.fromarray(grey, mode="L").resize((size, size), Image.BICUBIC).convert("RGB")
                    img.save(folder / f"{i:04d}.png")
        (Path(tmp) / _MARKER).write_text(f"size={size} val_fraction={val_fraction} seed={seed}\n")
    return _count(root)


def _count(root: Path) -> dict:
    return {split: sum(1 for _ in (root / split).glob("*/*.png")) for split in ("train", "val")}
