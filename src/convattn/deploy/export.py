"""Export a registered model to MINDIR and/or ONNX, verify every artifact, write a JSON sidecar.

Order of work (nothing is written before step 4, nothing final before step 6):

1. validate the request: format, output paths (existing files are refused unless ``overwrite``; the
   output folder must be writable), batch and image size;
2. build the model for this device (its default form) and load the checkpoint strictly (every name and shape,
   the classifier included);
3. run the network in eval mode on a fixed random batch: the reference; an image size the model cannot
   take fails here, with the model's own message;
4. per format, build the network in its export form (``create_model(..., export_safe=ONNX, cpu_backend=False,
   deploy='auto')``: standard cells, the target's formulations, the deploy re-parameterisation), load the same
   weights through the one loader, and export into a private temporary folder (``mindspore.onnx.export`` chmods
   its folder to 0700, MindSpore writes files with mode 0400 and refuses names with a space), then move the file
   into a private temporary folder inside the output folder, so nothing touches the user's folder or files;
5. load the artifact back (``mindspore.load`` + ``nn.GraphCell`` / onnxruntime), run the same batch
   (and a second batch size with ``dynamic_batch``), compare with the reference;
6. only if the max abs difference is within the tolerance: move the artifact and its sidecar into place.
   A failed verification deletes the temporary folder and leaves existing files untouched.
"""
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from ..utils.errors import UserError

__all__ = ["export_model", "ExportError", "ExportVerificationError", "ExportResult", "FORMATS", "TOLERANCES",
           "parse_formats", "weights_sha256"]

FORMATS = ("MINDIR", "ONNX")
SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx"}
# max |artifact - network| allowed: float32 absolute; float16 relative to max(1, max|reference|) because
# the fp16 artifact is compared with the float32 network (half precision keeps ~3 decimal digits).
TOLERANCES = {"float32": 1e-4, "float16": 2e-2}
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_OPSET = 11  # what mindspore.onnx.export 2.10 writes


class ExportError(UserError, ValueError):
    """The export request cannot be carried out (bad model/checkpoint/format/path/size)."""


class ExportVerificationError(UserError, RuntimeError):
    """The exported artifact does not reproduce the network within the tolerance (nothing was kept)."""


@dataclass
class ExportResult:
    format: str
    path: str
    sidecar: str
    max_abs_diff: float
    tolerance: float
    size_bytes: int
    seconds: float
    deploy: Dict[str, list] = field(default_factory=dict)


def parse_formats(fmt: str) -> List[str]:
    f = str(fmt).upper()
    if f == "ALL":
        return list(FORMATS)
    if f not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of MINDIR, ONNX or ALL")
    return [f]


def weights_sha256(net) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every parameter, in name order: identifies the weights."""
    h = hashlib.sha256()
    for p in sorted(net.get_parameters(), key=lambda q: q.name):
        arr = np.ascontiguousarray(p.asnumpy())
        h.update(f"{p.name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_outputs(out_dir: str, stem: str, formats: Sequence[str], overwrite: bool) -> Dict[str, str]:
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ExportError(f"output path '{out_dir}' exists and is not a folder; pass --out a folder")
    probe = out_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ExportError(f"output folder '{out_dir}' cannot be created: '{probe}' is a file; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"output folder '{out_dir}' is not writable ('{probe}' denies writing); choose another --out")
    paths = {}
    for f in formats:
        art = os.path.join(out_dir, stem + SUFFIX[f])
        for p in (art, art + ".json"):
            if os.path.lexists(p):
                if not overwrite:
                    ro = "" if os.access(p, os.W_OK) else " (read-only: MindSpore writes exports with mode 0400)"
                    raise ExportError(f"'{p}' already exists{ro}; nothing was written. Choose another --out/--name "
                                      "or pass --overwrite to replace it after the new export verifies")
                if os.path.isdir(p):
                    raise ExportError(f"'{p}' is a folder; remove it or choose another --out")
        paths[f] = art
    return paths


def _read_checkpoint(ckpt: str) -> Dict:
    from ..models.helpers import CheckpointMismatchError, read_checkpoint

    if not os.path.isfile(ckpt):
        raise ExportError(f"checkpoint '{ckpt}' does not exist (pass the path to a MindSpore .ckpt, or "
                          "--random_weights for a smoke test)")
    try:
        return read_checkpoint(ckpt)
    except CheckpointMismatchError as exc:
        raise ExportError(str(exc)) from exc


def _build(model: str, ckpt: Optional[str], random_weights: bool, num_classes: Optional[int], model_kwargs: dict,
           target: Optional[str] = None, weights: Optional[Dict] = None, pretrained=None, **form):
    """Build ``model`` for ``target`` in the form ``form`` (``export_safe``, ``cpu_backend``, ``deploy``; see
    :func:`convattn.create_model`) and load ``ckpt`` (or ``weights``, a name -> tensor dict; or ``pretrained``: True
    for the official weights, or an official .pth) strictly, every name and shape, the classifier included; a
    checkpoint of any formulation loads (see :func:`convattn.models.helpers.load_checkpoint`)."""
    from ..models import create_model, get_model_cfg
    from ..models.helpers import CheckpointMismatchError

    cfg = get_model_cfg(model)  # unknown names fail here, with suggestions
    given = [n for n, v in (("--ckpt", ckpt), ("--pretrained", pretrained), ("--random_weights", random_weights))
             if v not in (None, False)]
    if not given and weights is None:
        raise ExportError("--ckpt is required (or --pretrained for the official weights; pass --random_weights to "
                          "export untrained weights for a smoke test)")
    if len(given) > 1:
        raise ExportError(f"pass one of {' / '.join(given)}, not several")
    if pretrained not in (None, False):
        weights = pretrained
    if ckpt is not None:
        weights = _read_checkpoint(ckpt)
    if num_classes is None:
        head = f"{cfg['classifier']}.weight" if cfg.get("classifier") else None
        num_classes = int(weights[head].shape[0]) if isinstance(weights, dict) and head in weights else \
            cfg["num_classes"]
    try:
        net = create_model(model, num_classes=num_classes, target=target, pretrained=weights,
                           load_args={"classifier": None, "source": ckpt}, **form, **model_kwargs)
    except CheckpointMismatchError as exc:
        raise ExportError(f"{exc}\n(built with num_classes={num_classes}, model kwargs {model_kwargs}): pass the "
                          "--model, --model_kwargs and --num_classes it was trained with.") from exc
    except (TypeError, ValueError) as exc:
        raise ExportError(f"cannot build {model} with num_classes={num_classes}, {model_kwargs}: {exc}") from exc
    net.set_train(False)
    return net, cfg, num_classes


def _state(net) -> Dict:
    import mindspore as ms

    return {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), name=p.name) for p in net.get_parameters()}


def _run_reference(net, x: np.ndarray, model: str):
    import mindspore as ms

    try:
        out = net(ms.Tensor(x))
    except (ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ExportError(f"{model} cannot take an input of shape {tuple(x.shape)}: {first}. "
                          "Choose an --image_size the model accepts (e.g. its default_cfg input_size).") from exc
    if isinstance(out, (tuple, list)):
        raise ExportError(f"{model} returns {len(out)} outputs; export the classifier form (features_only=False)")
    return out.asnumpy().astype(np.float32)


def _export_one(net, fmt: str, tmp_dir: str, stem: str, x: np.ndarray, dynamic_batch: bool) -> str:
    import mindspore as ms

    base = os.path.join(tmp_dir, stem)
    dtype = ms.float16 if x.dtype == np.float16 else ms.float32
    if fmt == "MINDIR":
        inp = ms.Tensor(shape=[None] + list(x.shape[1:]), dtype=dtype) if dynamic_batch else ms.Tensor(x)
        ms.export(net, inp, file_name=base, file_format="MINDIR")
        path = base + ".mindir"
    else:
        path = base + ".onnx"
        dyn = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        ms.onnx.export(net, ms.Tensor(x), file_name=path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                       dynamic_axes=dyn)
    if not os.path.isfile(path):
        raise RuntimeError(f"MindSpore reported no error but wrote no {fmt} file at {path}")
    return path


def _run_artifact(fmt: str, path: str, x: np.ndarray) -> np.ndarray:
    import mindspore as ms

    if fmt == "MINDIR":
        graph = ms.load(path)
        out = ms.nn.GraphCell(graph)(ms.Tensor(x))
        return out.asnumpy().astype(np.float32)
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def export_model(
    model: str,
    ckpt: Optional[str] = None,
    fmt: str = "ALL",
    out_dir: str = "exported",
    batch: int = 1,
    image_size: Optional[Sequence[int]] = None,
    dynamic_batch: bool = False,
    fp16: bool = False,
    model_kwargs: Optional[dict] = None,
    num_classes: Optional[int] = None,
    random_weights: bool = False,
    overwrite: bool = False,
    name: Optional[str] = None,
    export_safe_mindir: bool = False,
    ascend_legal: bool = False,
    seed: int = 0,
    log=print,
    target: Optional[str] = None,
    pretrained=None,
    preprocessing: Optional[dict] = None,
    run_config: Optional[str] = None,
) -> List[ExportResult]:
    """Export ``model`` (a registered name) to MINDIR and/or ONNX and verify each file; see the module doc.

    ``name`` is the file stem (default: the model name, ``_fp16`` appended for half precision).
    ``export_safe_mindir`` gives the MINDIR the ONNX-safe formulations too (for a runtime that lacks an
    operator of the fast path, e.g. Roll on CPU). ``target`` (``'CPU'``, ``'GPU'``, ``'Ascend'``; None: the
    device MindSpore runs on) builds the network in that device's formulations (Ascend: every ACmix conv path
    depth-wise, so the sidecar's ``ascend_non_depthwise_grouped_convs`` is empty); the checkpoint may come from
    any formulation. When the target is not this device, the artifact is verified against the network built
    for this device (the formulation the tests check against the official code). ``ascend_legal=True`` is
    ``target='Ascend'``. ``pretrained`` (instead of ``ckpt``): True for the model's official
    weights (downloaded and converted on first use, see :mod:`convattn.hub`), or an official ``.pth`` file.
    ``preprocessing``: the training run's ``image_size`` / ``crop_pct`` / ``interpolation`` / ``mean`` / ``std``
    (null: the model's default); the input size defaults to its ``image_size`` and the sidecar records what the run
    used. ``run_config``: the run's config.yaml, named in the sidecar. Returns one :class:`ExportResult` per format.
    """
    import mindspore as ms

    from .. import __version__ as convattn_version
    from ..layers.targets import resolve_target
    from ..models import get_model_cfg
    from .transforms import ascend_grouped_conv_report

    from ..utils.cli import split_num_classes

    here = resolve_target(None)
    try:
        target = resolve_target(target if target is not None else ("Ascend" if ascend_legal else None))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if ascend_legal and target != "Ascend":
        raise ExportError(f"ascend_legal (--ascend) means target 'Ascend'; it contradicts target {target!r}")
    formats = parse_formats(fmt)
    try:
        model_kwargs, num_classes = split_num_classes(model_kwargs or {}, num_classes)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    get_model_cfg(model)
    if batch < 1:
        raise ExportError(f"--batch must be >= 1, got {batch}")
    stem = name or (model + ("_fp16" if fp16 else ""))
    paths = _check_outputs(out_dir, stem, formats, overwrite)
    # the reference: the weights in this device's default form (the form the tests check against the official code)
    ref_net, cfg, num_classes = _build(model, ckpt, random_weights, num_classes, model_kwargs, here,
                                       pretrained=pretrained)
    source = (ref_net.load_report or {}).get("source") if pretrained not in (None, False) else None
    if source is not None and source.get("kind") == "official":
        ckpt = source["checkpoint"]  # the converted official weights: the sidecar names and hashes that file
    state = _state(ref_net)
    net = ref_net
    in_chans = int(getattr(net, "in_chans", cfg["input_size"][0]))
    from ..data import resolve_data_cfg
    from .run import PREPROCESSING_KEYS
    pre = {k: (preprocessing or {}).get(k) for k in PREPROCESSING_KEYS}
    data_cfg = resolve_data_cfg(pre, cfg)  # the eval transform the artifact's inputs need
    if image_size is None:
        image_size = (pre["image_size"],) * 2 if pre["image_size"] else tuple(cfg["input_size"][1:])
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
        raise ExportError(f"--image_size takes two positive integers H W, got {image_size}")
    h, w = (int(s) for s in image_size)
    check = getattr(net, "check_input_size", None)
    if callable(check):
        try:
            check(h, w)
        except ValueError as exc:
            raise ExportError(f"{model} cannot take {h}x{w} inputs: {exc}") from exc
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, in_chans, h, w)).astype(np.float32)
    batches = [x]
    if dynamic_batch:
        batches.append(rng.standard_normal((batch + 1, in_chans, h, w)).astype(np.float32))
    refs = [_run_reference(ref_net, b, model) for b in batches]
    sha = weights_sha256(ref_net)
    del ref_net, net
    ckpt_sha = _file_sha256(ckpt) if ckpt else None
    precision = "float16" if fp16 else "float32"
    tol = TOLERANCES[precision]
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for f in formats:
        t0 = time.perf_counter()
        onnx_safe = f == "ONNX" or export_safe_mindir
        net, _, _ = _build(model, None, False, num_classes, model_kwargs, target, weights=state,
                           export_safe=onnx_safe, cpu_backend=False, deploy="auto")
        deploy = {"form": net.form.describe(), "switch_to_deploy": list(net.deploy_report),
                  "export_safe": onnx_safe, "cpu_backend": False}
        if fp16:
            net.to_float(ms.float16)
            for p in net.get_parameters():
                p.set_dtype(ms.float16)  # set_data(p.astype(...)) keeps the float32 storage
        feed = [b.astype(np.float16) if fp16 else b for b in batches]
        tmp_dir = tempfile.mkdtemp(prefix=f".{stem}.{f.lower()}.tmp-", dir=out_dir)
        # MindSpore refuses file names outside [A-Za-z0-9_./-] (e.g. a space): it writes into a private folder
        # under the system's temporary directory, the file is then moved next to its destination
        stage = tempfile.mkdtemp(prefix="convattn-export-")
        try:
            try:
                staged = _export_one(net, f, stage, "artifact", feed[0], dynamic_batch)
            except RuntimeError as exc:
                raise ExportError(f"{f} export of {model} failed inside MindSpore: "
                                  f"{str(exc).strip().splitlines()[0]}") from exc
            tmp_path = os.path.join(tmp_dir, stem + SUFFIX[f])
            shutil.move(staged, tmp_path)
            diffs = []
            for b, ref in zip(feed, refs):
                out = _run_artifact(f, tmp_path, b)
                if out.shape != ref.shape:
                    raise ExportVerificationError(f"{f} artifact of {model} returns shape {out.shape} for input "
                                                  f"{b.shape}, the network {ref.shape}; nothing was kept")
                diffs.append(float(np.abs(out - ref).max()))
            diff = max(diffs)
            limit = tol * max(1.0, float(np.abs(refs[0]).max())) if fp16 else tol
            log(f"[export] {model} {f} {precision}: max abs diff {diff:.3g} (tolerance {limit:.3g}, "
                f"batches {[b.shape[0] for b in feed]})")
            if not diff <= limit:
                raise ExportVerificationError(
                    f"{f} artifact of {model} differs from the network by {diff:.3g} > tolerance {limit:.3g} "
                    f"({precision}); nothing was written, existing files were left as they were")
            size = os.path.getsize(tmp_path)
            sidecar = {
                "model": model,
                "format": f,
                "file": os.path.basename(paths[f]),
                "size_bytes": size,
                "file_sha256": _file_sha256(tmp_path),
                "input": {"name": INPUT_NAME, "shape": [None if dynamic_batch else batch, in_chans, h, w],
                          "dtype": precision, "layout": "NCHW"},
                "output": {"name": OUTPUT_NAME, "shape": [None if dynamic_batch else batch, num_classes]},
                "preprocessing": {"mean": list(data_cfg["mean"]), "std": list(data_cfg["std"]),
                                  "crop_pct": data_cfg["crop_pct"], "interpolation": data_cfg["interpolation"],
                                  "input_size": [in_chans, h, w]},
                "run_config": os.path.abspath(run_config) if run_config else None,
                "num_classes": num_classes,
                "model_kwargs": model_kwargs,
                "target": target,
                "weights_sha256": sha,
                "checkpoint": os.path.abspath(ckpt) if ckpt else None,
                "checkpoint_sha256": ckpt_sha,
                "pretrained": source,
                "random_weights": bool(random_weights),
                "verification": {"max_abs_diff": diff, "tolerance": limit, "precision": precision,
                                 "batch_sizes": [int(b.shape[0]) for b in feed], "seed": seed,
                                 "reference": f"the network built for {here}, in eval mode",
                                 "runtime": "mindspore.load + nn.GraphCell" if f == "MINDIR" else "onnxruntime"},
                "deploy_transforms": deploy,
                "export_safe": onnx_safe,
                "onnx_opset": ONNX_OPSET if f == "ONNX" else None,
                "ascend_non_depthwise_grouped_convs": ascend_grouped_conv_report(net),
                "mindspore_version": ms.__version__,
                "convattn_version": convattn_version,
                "python": platform.python_version(),
            }
            side_tmp = os.path.join(tmp_dir, "sidecar.json")
            _write_json(side_tmp, sidecar)
            os.chmod(tmp_path, 0o444)  # read-only for everyone, like MindSpore's 0400 but readable by a server
            os.replace(tmp_path, paths[f])
            os.replace(side_tmp, paths[f] + ".json")
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            shutil.rmtree(stage, ignore_errors=True)
        results.append(ExportResult(f, paths[f], paths[f] + ".json", diff, limit, size, time.perf_counter() - t0, deploy))
    return results
