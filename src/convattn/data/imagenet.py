"""ImageNet's validation set as distributed (50,000 flat files + a label file) -> the class-folder layout.

``train/`` comes in class folders, ``val/`` as flat ``ILSVRC2012_val_*.JPEG`` files. This writes
``<out>/<class>/<file>`` as symbolic links to the flat files (no copies; ``out`` defaults to the val folder
itself, whose flat files the ImageFolder reader then ignores, since it reads class folders only). Label files
understood:

* Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the class is the first WordNet id);
* ``<file> <class>`` lines (``<class>`` a folder name such as a WordNet id, or an integer index: then
  ``--classes`` and ``--index_base`` say which folder an index means);
* one label per line in sorted file order, as the devkit's ``ILSVRC2012_validation_ground_truth.txt``
  (integers in the devkit's ILSVRC2012_ID order, which differs from the sorted WordNet order: pass the devkit's
  ``meta.mat`` as ``--classes``, read with SciPy, or a text file of WordNet ids in that order with ``--index_base 1``).

Everything is checked before anything is written (every image has a label, every label an image); a dry
run prints what would be done. A rerun is a no-op; an existing entry that is not the same link stops it.
"""
import csv
import os
from typing import Dict, List, Optional, Tuple

from .dataset import IMG_EXTENSIONS
from ..utils.errors import UserError

__all__ = ["ValLayoutError", "read_val_labels", "plan_val_layout", "make_val_layout", "VAL_LAYOUT_SCRIPT"]

VAL_LAYOUT_SCRIPT = "scripts/imagenet_val_layout.py"


class ValLayoutError(UserError, ValueError):
    """The flat folder and the label file do not fit together (the message says how)."""


def _read_classes(path: str) -> List[str]:
    if path.endswith(".mat"):  # the devkit's meta.mat: synsets with ILSVRC2012_ID 1..1000 are the classes
        from scipy.io import loadmat
        try:
            synsets = loadmat(path, squeeze_me=True)["synsets"]
            pairs = sorted((int(r["ILSVRC2012_ID"]), str(r["WNID"])) for r in synsets if int(r["num_children"]) == 0)
        except Exception as exc:
            raise ValLayoutError(f"cannot read the synsets of {path} ({type(exc).__name__}: {exc}); pass the "
                                 "devkit's data/meta.mat or a text file of class names") from exc
        return [wnid for _, wnid in pairs]
    with open(path, encoding="utf-8") as f:  # one class per line; '<wnid> <names>' lines keep the first token
        return [line.split()[0] for line in f if line.strip()]


def read_val_labels(labels: str, images: List[str], classes: Optional[str] = None,
                    index_base: Optional[int] = None) -> Dict[str, str]:
    """``{image file name: class folder name}`` from a label file (formats in the module doc)."""
    if not os.path.isfile(labels):
        raise ValLayoutError(f"label file {labels} does not exist")
    with open(labels, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValLayoutError(f"label file {labels} is empty")
    stems = {os.path.splitext(n)[0]: n for n in images}
    pairs: List[Tuple[str, str]] = []
    if lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):  # Kaggle CSV
        for row in csv.reader(lines[1:]):
            if len(row) < 2 or not row[1].split():
                raise ValLayoutError(f"{labels}: bad row {row!r} (expected ImageId,PredictionString)")
            pairs.append((row[0], row[1].split()[0]))
    elif all(len(ln.split()) == 1 for ln in lines):  # one label per line, sorted file order (devkit)
        if len(lines) != len(images):
            raise ValLayoutError(f"{labels} has {len(lines)} labels (one per line, in sorted file order) but the "
                                 f"folder holds {len(images)} images")
        pairs = list(zip(sorted(images), lines))
    else:
        for ln in lines:
            parts = ln.split()
            if len(parts) != 2:
                raise ValLayoutError(f"{labels}: cannot read line {ln!r} (expected '<file> <class>')")
            pairs.append((os.path.basename(parts[0]), parts[1]))
    numeric = all(lab.lstrip("-").isdigit() for _, lab in pairs)
    names = None
    if numeric:
        if classes is not None and classes.endswith(".mat") and index_base is None:
            index_base = 1  # ILSVRC2012_IDs start at 1
        if classes is None or index_base is None:
            raise ValLayoutError(
                f"{labels} gives integer labels: pass --classes with the devkit's meta.mat, or --classes FILE (the "
                "class folder names in label order, one per line) and --index_base 1 or 0")
        names = _read_classes(classes)
    out: Dict[str, str] = {}
    for key, lab in pairs:
        name = key if key in images else stems.get(key, stems.get(os.path.splitext(key)[0]))
        if name is None:
            raise ValLayoutError(f"{labels} labels '{key}', which is not an image in the folder")
        if names is not None:
            i = int(lab) - int(index_base)
            if not 0 <= i < len(names):
                raise ValLayoutError(f"label {lab} of {key} is outside {classes}'s {len(names)} classes "
                                     f"(index base {index_base})")
            lab = names[i]
        if os.sep in lab or lab in (".", ".."):
            raise ValLayoutError(f"label {lab!r} of {key} is not a folder name")
        out[name] = lab
    return out


def plan_val_layout(val_dir: str, labels: str, out_dir: Optional[str] = None, classes: Optional[str] = None,
                    index_base: Optional[int] = None) -> List[Tuple[str, str]]:
    """``[(link path, target)]`` for every flat image; raises before anything is written if they do not fit."""
    if not os.path.isdir(val_dir):
        raise ValLayoutError(f"validation folder {val_dir} does not exist")
    images = sorted(e.name for e in os.scandir(val_dir) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
    if not images:
        raise ValLayoutError(f"{val_dir} holds no image files at its top level (already in class folders?)")
    mapping = read_val_labels(labels, images, classes, index_base)
    unlabelled = [n for n in images if n not in mapping]
    if unlabelled:
        raise ValLayoutError(f"{len(unlabelled)} of {len(images)} images in {val_dir} have no label in {labels}, "
                             f"e.g. {unlabelled[0]}; is it the label file of this folder?")
    out_dir = os.path.abspath(out_dir or val_dir)
    plan = []
    for name in images:
        link = os.path.join(out_dir, mapping[name], name)
        target = os.path.relpath(os.path.join(os.path.abspath(val_dir), name), os.path.dirname(link))
        plan.append((link, target))
    return plan


def make_val_layout(val_dir: str, labels: str, out_dir: Optional[str] = None, classes: Optional[str] = None,
                    index_base: Optional[int] = None, dry_run: bool = False, log=print) -> dict:
    """Create the class folders and links (or, with ``dry_run``, only say what would be created)."""
    plan = plan_val_layout(val_dir, labels, out_dir, classes, index_base)
    folders = sorted({os.path.dirname(link) for link, _ in plan})
    todo, clashes = [], []
    for link, target in plan:
        if os.path.islink(link) and os.readlink(link) == target:
            continue  # from an earlier run
        if os.path.lexists(link):
            clashes.append(link)
        else:
            todo.append((link, target))
    if clashes:
        raise ValLayoutError(f"{len(clashes)} entries already exist and are not the expected links, e.g. "
                             f"{clashes[0]}; nothing was written. Move them away or choose another --out")
    summary = {"images": len(plan), "classes": len(folders), "links_to_create": len(todo),
               "already_linked": len(plan) - len(todo), "out_dir": os.path.dirname(folders[0])}
    verb = "would create" if dry_run else "creating"
    log(f"[val-layout] {len(plan)} images in {len(folders)} classes: {verb} {len(todo)} links under "
        f"{summary['out_dir']} ({summary['already_linked']} already there)")
    for link, target in todo[:3]:
        log(f"[val-layout]   {link} -> {target}")
    if dry_run:
        return summary
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    for link, target in todo:
        os.symlink(target, link)
    log(f"[val-layout] done: point the config's val_split at {summary['out_dir']}")
    return summary
