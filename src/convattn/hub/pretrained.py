"""Official weights for ``create_model``: ``pretrained=True`` (download, verify, convert once, cache) and
``pretrained='file.pth'`` (an official PyTorch file, converted on the fly).

``pretrained=True``: :func:`official_checkpoint` fetches the official file (:func:`.cache.fetch_official`), converts
it with the converter (:func:`convattn.convert.converter.convert_checkpoint`, the same code as ``python -m
convattn.convert``) into ``$CONVATTN_HOME/converted/<model>-<sha256[:16]>-conv<CONVERTER_VERSION>.ckpt`` -- keyed by
the source file's hash and the converter's version, so a new file or a converter change converts again -- and
``create_model`` loads that through the one loader (:func:`convattn.models.helpers.load_checkpoint`). The second
call reads only the converted file: no network, no source file. Concurrent processes convert once (a lock).

``pretrained='file.pth'``: :func:`load_official_file` maps the file's tensors onto the network built (the converter's
rules) and loads them through the same loader, in memory; nothing is written.
"""
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from .cache import (cache_home, fetch_official, locked, official_path, recorded_sha256, released_entry, say,
                    WeightsError)

__all__ = ["official_checkpoint", "converted_path", "load_official_file"]


def converted_path(name: str, sha256: str) -> Path:
    """Where the MindSpore checkpoint converted from the official file with hash ``sha256`` is cached."""
    from ..convert.converter import CONVERTER_VERSION

    return cache_home() / "converted" / f"{name}-{sha256[:16]}-conv{CONVERTER_VERSION}.ckpt"


def _record(name: str, entry: dict, sha: str, ckpt: Path, src: Optional[Path]) -> Dict:
    return {"kind": "official", "model": name, "file": entry["file"], "sha256": sha,
            "source_path": str(src) if src else None, "checkpoint": str(ckpt), "top1": entry["top1"],
            "urls": list(entry["urls"])}


def official_checkpoint(name: str, progress: Optional[bool] = None) -> Tuple[str, Dict]:
    """The cached MindSpore ``.ckpt`` of ``name``'s official weights (downloaded, verified and converted on first
    use) and a record of where it came from. Refusals and download errors: see :func:`.cache.fetch_official`."""
    entry = released_entry(name)
    src = official_path(entry)
    known = entry.get("sha256") or (recorded_sha256(src) if src.exists() else None)
    if known:
        ckpt = converted_path(name, known)
        if ckpt.exists():  # converted before: no network, no source file
            return str(ckpt), _record(name, entry, known, ckpt, src if src.exists() else None)
    src, sha = fetch_official(name, progress)
    ckpt = converted_path(name, sha)
    if not ckpt.exists():
        with locked(ckpt, f"{name}'s converted weights"):
            if not ckpt.exists():  # another process may have converted it while this one waited
                _convert(name, entry, src, ckpt)
    return str(ckpt), _record(name, entry, sha, ckpt, src)


def _convert(name: str, entry: dict, src: Path, ckpt: Path) -> None:
    from ..convert.converter import convert_checkpoint
    from ..convert.pth_reader import CheckpointFormatError

    say(f"converting {src.name} for {name} into {ckpt}")
    try:  # the caller loads the result at once (the one loader checks every tensor): no load-back here
        convert_checkpoint(str(src), str(ckpt), name, verify=False)
    except CheckpointFormatError as exc:
        if entry.get("sha256"):
            raise
        # no full published hash to prove the bytes: a truncated or wrong file is dropped so that the next call
        # downloads it again
        for path in (src, src.with_name(src.name + ".json")):
            if path.exists():
                os.remove(path)
        raise WeightsError(f"{name}: the downloaded {src.name} is not a readable checkpoint ({exc}); it was removed "
                           "from the cache: call again to download it anew") from exc


def load_official_file(net, path: str, classifier: Optional[str] = "head", **load_args) -> dict:
    """Load an official PyTorch checkpoint (``.pth``/``.pth.tar``/``.pt``, or a ``.npz`` of state_dict arrays) into
    ``net``: its tensors are mapped by the converter's rules for ``net``'s family and loaded through the one loader
    (``load_args``: :func:`~convattn.models.helpers.load_checkpoint`'s). With another class count, exactly the
    classifier's tensors are left out, and the loader says so."""
    from ..convert.converter import map_official_state, read_official_state
    from ..models.helpers import load_checkpoint

    state = read_official_state(path)
    tensors, _report, _dropped = map_official_state(net, state, classifier=[classifier] if classifier else [])
    load_args["source"] = load_args.get("source") or path  # the name messages give the weights
    report = load_checkpoint(net, tensors, classifier=classifier, **load_args)
    report["source"] = {"kind": "official file", "path": os.path.abspath(path)}
    return report
