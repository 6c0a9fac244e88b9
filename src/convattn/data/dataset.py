"""ImageFolder data through ``mindspore.dataset``: listing, decoding, sharding, batching.

Corrupt/non-image file policy (decided here, tested in tests/test_engine_data.py):

* **Files that are not images by extension** (``README``, ``.DS_Store``, ``*.txt``, ...) are skipped when
  the tree is listed, and counted in one warning naming the count and an example — a data folder often
  holds such files and they are not samples.
* **A file with an image extension that cannot be decoded** (truncated JPEG, zero bytes, text renamed
  to ``.jpg``) follows the ``bad_images`` policy, the same as ``scripts/infer.py``'s (which reports each such
  file and predicts the others):

  - ``'skip'`` (the default): the sample is replaced by the next decodable one in the listing (so the epoch
    length, the batch shapes and the seeded order are the same on every machine, and exact resume still
    replays it), one warning names each bad file the first time, and the loader's :class:`BadImageLog` counts
    every replacement; the trainer prints the epoch's count and an example at the end of each epoch. Nothing is
    dropped silently.
  - ``'stop'``: the first bad file ends the run with one error line naming its path.

  With ``python_multiprocessing=True`` the count stays in the worker processes (their warnings still name
  each file).

Decoding is done with Pillow inside the sample source (so the failing path is known), the remaining
transforms with ``mindspore.dataset.vision`` C++ ops. ``decode='cpp'`` instead hands each file's bytes to
MindSpore's C++ ``vision.Decode`` in the map workers (identical pixels; measured no faster on 2 cores, see the
README's input-pipeline numbers); the source checks the bytes first so the policy above still holds: a file that
does not start as a JPEG, does not end with the JPEG end-of-image marker (a truncated file, which the C++ decoder
would fill with grey) or is not RGB/greyscale (CMYK) is decoded with Pillow in the source instead (raising the
error naming the path, or handing the pixels on losslessly as BMP).
"""
import io
import logging
import os
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..utils.errors import UserError

__all__ = ["IMG_EXTENSIONS", "BAD_IMAGE_POLICIES", "CorruptImageError", "BadImageLog", "list_image_folder",
           "ImageFolderSource", "create_loader"]

_logger = logging.getLogger("convattn.data")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jpe")
BAD_IMAGE_POLICIES = ("skip", "stop")


class CorruptImageError(UserError, RuntimeError):
    """An image file that cannot be decoded; the message names its path."""


def list_image_folder(root: str, class_to_idx: Optional[dict] = None) -> Tuple[List[Tuple[str, int]], dict, int]:
    """``root/<class>/**/<file>`` -> (sorted [(path, label)], class_to_idx, skipped non-image count)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        flat = sum(1 for e in os.scandir(root) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        if flat:  # e.g. ImageNet's val/ as distributed: 50,000 files and a separate label file
            raise ValueError(
                f"image folder {root} holds {flat} images directly but no class sub-folders (expected "
                f"{root}/<class>/<image>). For ImageNet's flat validation folder run: python "
                f"scripts/imagenet_val_layout.py --val {root} --labels LABEL_FILE (links them into class folders)")
        raise ValueError(f"image folder {root} has no class sub-folders (expected {root}/<class>/<image>)")
    if class_to_idx is None:
        class_to_idx = {c: i for i, c in enumerate(classes)}
    else:
        missing = [c for c in classes if c not in class_to_idx]
        if missing:
            raise ValueError(f"{root} has classes {missing[:5]} that the training tree does not have")
    samples, skipped, example = [], 0, None
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls), followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if name.lower().endswith(IMG_EXTENSIONS):
                    samples.append((path, class_to_idx[cls]))
                else:
                    skipped += 1
                    example = example or path
    if skipped:
        _logger.warning("skipped %d non-image file(s) under %s (not a known image extension), e.g. %s",
                        skipped, root, example)
    if not samples:
        raise ValueError(f"image folder {root} holds no images with extensions {IMG_EXTENSIONS}")
    return samples, class_to_idx, skipped


def decode_image(path: str) -> np.ndarray:
    """Pillow decode to an RGB HWC uint8 array; a bad file raises :class:`CorruptImageError` naming it."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        raise CorruptImageError(
            f"cannot decode image file {path}: {type(exc).__name__}: {exc}. Delete or replace the file "
            "(convattn stops on undecodable images instead of silently dropping samples)") from exc


_JPEG_PADDING = frozenset(b"\x00\n\r ")


def _complete_rgb_jpeg(data: np.ndarray) -> bool:
    """Starts with a JPEG start-of-image marker, ends with end-of-image (trailing padding allowed), and its
    header says RGB or greyscale (the modes the C++ decoder converts like Pillow)."""
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8 or data[2] != 0xFF:
        return False
    end = data.size
    while end > 2 and data[end - 1] in _JPEG_PADDING:
        end -= 1
    if data[end - 2] != 0xFF or data[end - 1] != 0xD9:
        return False
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:  # reads the header only
            return img.mode in ("RGB", "L")
    except Exception:
        return False


def read_encoded(path: str) -> np.ndarray:
    """A file's bytes for the C++ ``vision.Decode``, after the checks of :func:`_complete_rgb_jpeg`; any other
    file is decoded with Pillow (a bad one raises :class:`CorruptImageError` naming it) and handed on as BMP."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CorruptImageError(f"cannot read image file {path}: {exc}") from exc
    if _complete_rgb_jpeg(data):
        return data
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(decode_image(path)).save(buf, format="BMP")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


class BadImageLog:
    """The undecodable files a loader skipped (thread-safe): :meth:`take` returns the (path, reason) of every
    replacement since the last call; each file is warned about once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: List[Tuple[str, str]] = []
        self._warned = set()
        self.total = 0

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._events.append((path, reason))
            self.total += 1
            first = path not in self._warned
            self._warned.add(path)
        if first:
            _logger.warning("skipped an undecodable image (bad_images: skip): %s", reason)

    def take(self) -> List[Tuple[str, str]]:
        with self._lock:
            events, self._events = self._events, []
        return events


class ImageFolderSource:
    """Random-access source for ``GeneratorDataset``: index -> (image, int32 label), the image decoded (HWC uint8)
    or, with ``encoded=True``, the checked file bytes for ``vision.Decode`` (see :func:`read_encoded`).
    ``bad_images``: ``'skip'`` replaces an undecodable file by the next decodable sample and records it in
    ``bad_log``; ``'stop'`` raises :class:`CorruptImageError` (see the module doc)."""

    def __init__(self, samples: Sequence[Tuple[str, int]], encoded: bool = False, bad_images: str = "skip",
                 bad_log: Optional[BadImageLog] = None) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {list(BAD_IMAGE_POLICIES)}, got {bad_images!r}")
        self.samples = list(samples)
        self.encoded = encoded
        self.bad_images = bad_images
        self.bad_log = bad_log if bad_log is not None else BadImageLog()

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, index: int):
        path, label = self.samples[index]
        return (read_encoded(path) if self.encoded else decode_image(path)), np.int32(label)

    def __getitem__(self, index):
        index = int(index)
        try:
            return self._read(index)
        except CorruptImageError as exc:
            if self.bad_images == "stop":
                raise
            self.bad_log.add(self.samples[index][0], str(exc).split(". Delete")[0])
            first_error = exc
        for step in range(1, len(self.samples)):  # the next decodable sample takes its place
            j = (index + step) % len(self.samples)
            try:
                return self._read(j)
            except CorruptImageError:
                continue
        raise CorruptImageError(f"no image under the data folder can be decoded (first: {first_error})")


def create_loader(root: str, transforms: list, batch_size: int, shuffle: bool, drop_remainder: bool,
                  num_workers: int = 1, num_shards: Optional[int] = None, shard_id: Optional[int] = None,
                  seed: int = 0, class_to_idx: Optional[dict] = None, python_multiprocessing: bool = False,
                  aug_repeats: int = 1, decode: str = "pil", bad_images: str = "skip",
                  bad_log: Optional[BadImageLog] = None, samples: Optional[Sequence[Tuple[str, int]]] = None):
    """A batched ``mindspore.dataset`` pipeline over one ImageFolder tree.

    ``seed`` fixes shuffle order and random transforms (call once per epoch with a new seed for a new
    order; the same seed replays the same epoch, which is what exact resume relies on). With
    ``num_shards``/``shard_id`` each rank reads its own disjoint part (sharding by rank).

    ``aug_repeats > 1`` is repeated augmentation (DeiT's ``RASampler``): the (seeded) permutation is
    repeated ``aug_repeats`` times element-wise and dealt round-robin to the ranks, so the copies of an
    image land on different ranks (on one rank: in the same batch) and get independent random
    transforms; each rank keeps ``num_samples // num_shards`` of them, so the epoch length is unchanged.
    (timm also rounds that count down to a multiple of 256 / num_shards; that ImageNet detail is left out.)
    ``decode``: ``'pil'`` (Pillow in the source, the default) or ``'cpp'`` (checked bytes to the C++
    ``vision.Decode``; see the module doc). ``transforms`` are the ops after decoding either way.
    ``bad_images`` / ``bad_log``: the undecodable-file policy and the log of skipped files (module doc).
    ``samples``: the tree's listing when the caller has it already (with ``class_to_idx``), so it is not
    listed (and its non-image files not warned about) again. Returns ``(dataset, class_to_idx, num_samples)``.
    """
    import mindspore.dataset as ds

    if samples is None or class_to_idx is None:
        samples, class_to_idx, _ = list_image_folder(root, class_to_idx)
    samples = list(samples)
    ds.config.set_seed(int(seed) % (2 ** 32))
    kwargs = {}
    if aug_repeats < 1:
        raise ValueError(f"aug_repeats must be >= 1, got {aug_repeats}")
    n_all = len(samples)
    if aug_repeats > 1:
        shards, sid = (num_shards or 1), (shard_id or 0)
        order = np.random.RandomState(int(seed) % (2 ** 32)).permutation(n_all) if shuffle else np.arange(n_all)
        chosen = np.repeat(order, aug_repeats)[sid::shards][:n_all // shards]
        samples, shuffle = [samples[i] for i in chosen], False
    elif num_shards is not None and num_shards > 1:
        kwargs.update(num_shards=num_shards, shard_id=shard_id)
    if decode not in ("pil", "cpp"):
        raise ValueError(f"decode must be 'pil' or 'cpp', got {decode!r}")
    if decode == "cpp":
        from mindspore.dataset import vision
        transforms = [vision.Decode()] + list(transforms)
    source = ImageFolderSource(samples, encoded=decode == "cpp", bad_images=bad_images, bad_log=bad_log)
    dataset = ds.GeneratorDataset(source, column_names=["image", "label"],
                                  shuffle=shuffle,
                                  num_parallel_workers=num_workers, python_multiprocessing=python_multiprocessing,
                                  **kwargs)
    dataset = dataset.map(operations=transforms, input_columns="image", num_parallel_workers=num_workers)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset, class_to_idx, n_all
