"""Class names for predictions: the training tree's (saved beside the checkpoints), ImageNet-1k's, or indices.

Training writes ``class_names.json`` into its checkpoint folder: ``{"class_to_idx": {name: index}}``, the
mapping the ImageFolder reader built from the training tree (sorted folder names). A 1,000-class model
without such a file gets ImageNet-1k's names: ``imagenet_synsets.txt`` ships with the package, one line per
class in index order (the sorted WordNet ids the class folders of ImageNet's ``train/`` are named by):
``<wnid> <name>[, <synonym>...]``.
"""
import json
import os
from functools import lru_cache
from typing import Dict, List, Optional

__all__ = ["CLASS_NAMES_FILE", "write_class_names", "read_class_names", "imagenet_synsets", "imagenet_class_names",
           "class_names_for"]

CLASS_NAMES_FILE = "class_names.json"
_SYNSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_synsets.txt")


def write_class_names(folder: str, class_to_idx: Dict[str, int]) -> str:
    """Write ``folder/class_names.json`` atomically; returns its path."""
    path = os.path.join(folder, CLASS_NAMES_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"class_to_idx": {str(k): int(v) for k, v in class_to_idx.items()}}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_class_names(path: str) -> List[str]:
    """Names in index order from a ``class_names.json`` (``{"class_to_idx": {...}}``, a name->index mapping or a
    list) or a text file (one class per line; ``<wnid> <name>`` lines as in ``imagenet_synsets.txt`` keep the line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class-names file {path} does not exist")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and "class_to_idx" in data:
            data = data["class_to_idx"]
        if isinstance(data, dict):
            names = [None] * len(data)
            for name, idx in data.items():
                if not isinstance(idx, int) or not 0 <= idx < len(data) or names[idx] is not None:
                    raise ValueError(f"{path}: class indices must be 0..{len(data) - 1}, each once; got {name!r}: {idx!r}")
                names[idx] = str(name)
            return names
        if isinstance(data, list):
            return [str(n) for n in data]
        raise ValueError(f"{path}: expected {{'class_to_idx': {{name: index}}}}, a name->index mapping or a list")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@lru_cache(maxsize=1)
def imagenet_synsets() -> List[tuple]:
    """``[(wnid, readable name), ...]`` for ImageNet-1k's 1,000 classes, in index order."""
    out = []
    with open(_SYNSETS, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                wnid, _, names = line.strip().partition(" ")
                out.append((wnid, names))
    return out


def imagenet_class_names() -> List[str]:
    """ImageNet-1k's names in index order (the first of each class's synonyms, e.g. ``tench``)."""
    return [names.split(",")[0].strip() for _, names in imagenet_synsets()]


def class_names_for(num_classes: int, names_file: Optional[str] = None,
                    search_dirs=()) -> tuple:
    """``(names, source)``: from ``names_file``, else ``class_names.json`` in the first of ``search_dirs`` holding
    one, else ImageNet-1k's names for 1,000 classes, else the indices as strings. A file whose class count differs
    from the model's is an error naming both counts."""
    path = names_file
    if path is None:
        for d in search_dirs:
            if d and os.path.isfile(os.path.join(d, CLASS_NAMES_FILE)):
                path = os.path.join(d, CLASS_NAMES_FILE)
                break
    if path is not None:
        names = read_class_names(path)
        if len(names) != num_classes:
            raise ValueError(f"{path} names {len(names)} classes but the model has {num_classes}; pass the class-names "
                             "file of the training run that wrote this checkpoint (or --class_names none for indices)")
        return names, path
    if num_classes == 1000:
        return imagenet_class_names(), "ImageNet-1k"
    return [str(i) for i in range(num_classes)], "indices"
