"""Predictions on image files: a registered model with a checkpoint, or an exported MINDIR.

Each image goes through the model's own eval transform (short side resized to ``size / crop_pct`` with the
model's interpolation, centre crop, the model's mean/std), images are batched through the network, and the
softmax top-k comes back per image. A MINDIR is described by the JSON sidecar the exporter writes beside it
(model name, input shape, preprocessing); a MINDIR exported at another size than the model's eval size is
fed at its own size (one message says so); a fixed-batch MINDIR gets full batches (the last one padded).

Bad input: a file that cannot be decoded is reported with its path (``status: error`` in the results) and
the other images are still predicted; a checkpoint of another model fails with
:class:`~convattn.models.helpers.CheckpointMismatchError`.
"""
import csv
import json
import os
from typing import Callable, List, Optional, Sequence

import numpy as np
from ..utils.errors import UserError

__all__ = ["Predictor", "InferError", "list_images", "write_predictions"]


class InferError(UserError, ValueError):
    """The request cannot be carried out (missing inputs, no model name, bad sidecar, ...)."""


def list_images(paths: Sequence[str]) -> List[str]:
    """Image files named directly, plus every image file under named folders (recursive, sorted)."""
    from ..data.dataset import IMG_EXTENSIONS

    out = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [os.path.join(dirpath, f) for f in sorted(filenames)
                          if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith(".")]
            if not found:
                raise InferError(f"folder {p} holds no image files ({', '.join(IMG_EXTENSIONS)})")
            out += found
        elif os.path.exists(p):
            out.append(p)  # named explicitly: tried whatever its extension, reported if it does not decode
        else:
            raise InferError(f"input {p} does not exist (pass image files or folders of images)")
    if not out:
        raise InferError("no input images given")
    return out


def _read_sidecar(mindir: str) -> dict:
    side = mindir + ".json"
    if not os.path.isfile(side):
        return {}
    with open(side, encoding="utf-8") as f:
        return json.load(f)


class Predictor:
    """Top-k predictions of a checkpoint (``model`` + ``ckpt``), of official weights (``model`` + ``pretrained``: True
    or an official .pth) or of an exported ``mindir``.

    ``model_kwargs``/``num_classes`` and the eval transform's size/crop/mean/std default to those in the training
    run's ``config.yaml`` beside the checkpoint (for a MINDIR: beside the checkpoint its sidecar names, then the
    sidecar), else the model's default config; class names to ``class_names.json`` beside the checkpoint, then
    ImageNet-1k's for 1,000 classes, then indices (``class_names='none'`` forces indices).
    """

    def __init__(self, model: Optional[str] = None, ckpt: Optional[str] = None, mindir: Optional[str] = None,
                 model_kwargs: Optional[dict] = None, num_classes: Optional[int] = None,
                 class_names: Optional[str] = None, batch_size: int = 16, log: Callable = print,
                 pretrained=None, run_config: Optional[dict] = None) -> None:
        from ..data import resolve_data_cfg
        from ..data.class_names import class_names_for
        from ..models import get_model_cfg
        from .run import PREPROCESSING_KEYS, load_run_config, run_checkpoint, run_config_beside, run_model

        if pretrained is False:
            pretrained = None
        if run_config is not None:  # -c RUN/config.yaml: the run's model, kwargs, classes and preprocessing
            model = run_model(run_config, model)
            if [ckpt, mindir, pretrained].count(None) == 3:
                ckpt = run_checkpoint(run_config)
        if [ckpt, mindir, pretrained].count(None) != 2:
            raise InferError("pass either a checkpoint (--model NAME --ckpt FILE), the official weights (--model NAME "
                             "--pretrained [FILE.pth]) or an exported --mindir FILE")
        if pretrained is not None and model is None:
            raise InferError("--pretrained needs --model NAME")
        if batch_size < 1:
            raise InferError(f"--batch_size must be >= 1, got {batch_size}")
        self.log, self.batch_size, self.fixed_batch, self.input_dtype = log, int(batch_size), None, np.float32
        search, data_keys = [], dict.fromkeys(PREPROCESSING_KEYS)
        if mindir is not None:
            side = _read_sidecar(mindir)
            if model and side.get("model") and model != side["model"]:
                raise InferError(f"{mindir} was exported from {side['model']} (its sidecar says so), not {model}; "
                                 f"pass --model {side['model']} or leave --model out")
            model = model or side.get("model")
            if model is None:
                raise InferError(f"{mindir} has no sidecar {mindir}.json naming its model; pass --model NAME "
                                 "(the preprocessing comes from the model's default config)")
            shape = (side.get("input") or {}).get("shape")
            if (side.get("input") or {}).get("dtype") == "float16":
                self.input_dtype = np.float16
            num_classes = num_classes or side.get("num_classes")
            pre = side.get("preprocessing") or {}
            data_keys.update({k: pre.get(k) for k in ("crop_pct", "interpolation", "mean", "std")})
            run_cfg = run_config
            if run_cfg is None and side.get("run_config") and os.path.isfile(side["run_config"]):
                run_cfg = load_run_config(side["run_config"])  # the training run it was exported from
            if run_cfg is None and side.get("checkpoint"):
                run_cfg = run_config_beside(side["checkpoint"], model)
            if side.get("checkpoint"):
                search.append(os.path.dirname(side["checkpoint"]))
            if run_cfg:
                search.append(os.path.dirname(run_cfg["_path"]))
                data_keys.update({k: run_cfg[k] for k in data_keys if run_cfg.get(k) is not None})
            search.append(os.path.dirname(os.path.abspath(mindir)))
        elif pretrained is not None:
            shape = None  # the official weights: the model's default config, ImageNet-1k's class names
        else:
            run_cfg = run_config or run_config_beside(ckpt, model) or {}
            if run_cfg:
                search.append(os.path.dirname(run_cfg["_path"]))
            model = model or run_cfg.get("model")
            if model is None:
                raise InferError("--ckpt needs --model NAME (the registered model it was trained as; a training "
                                 "run's config.yaml beside the checkpoint names it)")
            model_kwargs = run_cfg.get("model_kwargs", {}) if model_kwargs is None else model_kwargs
            num_classes = num_classes or run_cfg.get("num_classes")
            data_keys.update({k: run_cfg.get(k) for k in data_keys})  # the size/crop/mean/std it was trained with
            search.insert(0, os.path.dirname(os.path.abspath(ckpt)))
            shape = None
        model_cfg = get_model_cfg(model)  # unknown names fail here, with suggestions
        self.data_cfg = resolve_data_cfg(data_keys, model_cfg)
        eval_hw = (self.data_cfg["image_size"],) * 2 if data_keys["image_size"] else \
            tuple(int(s) for s in model_cfg["input_size"][1:])
        self.model, self.image_hw = model, eval_hw
        if mindir is not None:
            self._load_mindir(mindir, shape, eval_hw, num_classes)
        elif pretrained is not None:
            self._load_pretrained(model, pretrained, model_kwargs or {}, num_classes)
        else:
            self._load_ckpt(model, ckpt, model_kwargs or {}, num_classes)
        self.num_classes = int(self.num_classes)
        if class_names is not None and class_names.lower() == "none":
            self.class_names, self.names_source = [str(i) for i in range(self.num_classes)], "indices"
        else:
            self.class_names, self.names_source = class_names_for(self.num_classes, class_names, search)

    # ------------------------------------------------------------------------------------------- loading
    def _load_ckpt(self, model: str, ckpt: str, model_kwargs: dict, num_classes: Optional[int]) -> None:
        from ..models import create_model, get_model_cfg
        from ..models.helpers import load_checkpoint, read_checkpoint

        data = read_checkpoint(ckpt)  # read once, by the models' reader (its errors: missing file, not a .ckpt)
        if num_classes is None:  # the classifier's row count, when the checkpoint has one
            num_classes = self._classifier_rows(data, get_model_cfg(model).get("classifier")) or \
                get_model_cfg(model)["num_classes"]
        try:
            net = create_model(model, num_classes=int(num_classes), **model_kwargs)
        except (TypeError, ValueError) as exc:
            raise InferError(f"cannot build {model} with num_classes={num_classes}, {model_kwargs}: {exc}") from exc
        load_checkpoint(net, data, classifier=None, strict=True, source=ckpt)  # every weight, the classifier too
        net.set_train(False)
        self.net, self.num_classes = net, num_classes
        self._run = lambda x: net(x)

    def _load_pretrained(self, model: str, pretrained, model_kwargs: dict, num_classes: Optional[int]) -> None:
        from ..models import create_model, get_model_cfg

        num_classes = int(num_classes or get_model_cfg(model)["num_classes"])
        net = create_model(model, num_classes=num_classes, pretrained=pretrained, load_args={"classifier": None},
                           **model_kwargs)  # every weight, the classifier included
        net.set_train(False)
        self.net, self.num_classes = net, num_classes
        self._run = lambda x: net(x)

    @staticmethod
    def _classifier_rows(data: dict, classifier: Optional[str]) -> Optional[int]:
        """Rows of the classifier weight ``<classifier>.weight`` in a checkpoint read by ``read_checkpoint``."""
        value = data.get(f"{classifier}.weight") if classifier else None
        return int(value.shape[0]) if value is not None and len(value.shape) else None

    def _load_mindir(self, mindir: str, shape, eval_hw, num_classes: Optional[int]) -> None:
        import mindspore as ms

        if not os.path.isfile(mindir):
            raise InferError(f"MINDIR {mindir} does not exist")
        try:
            graph = ms.load(mindir)
        except Exception as exc:
            raise InferError(f"{mindir} is not a loadable MINDIR ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
        cell = ms.nn.GraphCell(graph)
        if shape:
            if shape[0] is not None:
                self.fixed_batch = int(shape[0])
            hw = (int(shape[2]), int(shape[3]))
            if hw != eval_hw:
                self.log(f"[infer] {os.path.basename(mindir)} takes {hw[0]}x{hw[1]} inputs, {self.model}'s eval size is "
                         f"{eval_hw[0]}x{eval_hw[1]}: images are resized and cropped to {hw[0]}x{hw[1]}")
                self.image_hw = hw
        else:
            self.fixed_batch = 1  # without the sidecar the batch size is unknown: one image per call is safe
            self.log(f"[infer] {mindir} has no sidecar {mindir}.json: feeding one image per call at "
                     f"{eval_hw[0]}x{eval_hw[1]}")
        self.batch_size = self.fixed_batch or self.batch_size
        self.net = cell
        self._run = lambda x: cell(x)
        if not num_classes:  # the output width, from one zero batch
            h, w = self.image_hw
            zeros = np.zeros((self.fixed_batch or 1, 3, h, w), self.input_dtype)
            num_classes = int(cell(ms.Tensor(zeros)).shape[-1])
        self.num_classes = int(num_classes)

    # ------------------------------------------------------------------------------------------- running
    def transform(self):
        from mindspore.dataset import transforms

        from ..data import eval_transforms

        h, w = self.image_hw
        ops = eval_transforms(h, self.data_cfg["mean"], self.data_cfg["std"], self.data_cfg["interpolation"],
                              self.data_cfg["crop_pct"])
        if h != w:  # eval_transforms crops squares; a non-square export takes its own crop
            from mindspore.dataset import vision
            ops[1] = vision.CenterCrop((h, w))
        return transforms.Compose(ops)

    def predict(self, images: Sequence[str], topk: int = 5) -> List[dict]:
        """One dict per image: ``path``, ``status`` ('ok' or 'error'), ``topk`` [(index, name, probability)] or
        ``error`` (the decode failure naming the path)."""
        import mindspore as ms

        from ..data.dataset import CorruptImageError, decode_image

        k = max(1, min(int(topk), self.num_classes))
        tf = self.transform()
        results: List[dict] = []
        pending: List[tuple] = []  # (result dict, CHW array)

        def flush():
            if not pending:
                return
            batch = np.stack([a for _, a in pending]).astype(self.input_dtype)
            n = len(batch)
            if self.fixed_batch and n < self.fixed_batch:
                batch = np.concatenate([batch, np.zeros((self.fixed_batch - n,) + batch.shape[1:], batch.dtype)])
            logits = self._run(ms.Tensor(batch)).asnumpy().astype(np.float64)[:n]
            z = logits - logits.max(-1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
            for (res, _), p in zip(pending, prob):
                top = np.argsort(-p, kind="stable")[:k]
                res["topk"] = [(int(i), self.class_names[int(i)], float(p[i])) for i in top]
            pending.clear()

        for path in images:
            res = {"path": path, "status": "ok"}
            results.append(res)
            try:
                arr = tf(decode_image(path))
            except CorruptImageError as exc:
                cause = exc.__cause__ or exc
                res.update(status="error", error=f"cannot decode image file {path}: {type(cause).__name__}: {cause}")
                self.log(f"[infer] skipped {path}: {res['error']}")
                continue
            pending.append((res, np.asarray(arr)))
            if len(pending) == self.batch_size:
                flush()
        flush()
        return results


def write_predictions(results: List[dict], path: str, fmt: Optional[str] = None) -> str:
    """Write the results as CSV (one row per image and rank) or JSON (by ``fmt`` or the extension); atomic."""
    fmt = (fmt or os.path.splitext(path)[1].lstrip(".") or "csv").lower()
    if fmt not in ("csv", "json"):
        raise InferError(f"output format must be csv or json, got '{fmt}' (from {path})")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if fmt == "json":
                rows = [{"path": r["path"], "status": r["status"],
                         **({"topk": [{"index": i, "name": n, "probability": p} for i, n, p in r["topk"]]}
                            if r["status"] == "ok" else {"error": r["error"]})} for r in results]
                json.dump(rows, f, indent=1)
                f.write("\n")
            else:
                w = csv.writer(f)
                w.writerow(["path", "rank", "index", "name", "probability", "status", "error"])
                for r in results:
                    if r["status"] != "ok":
                        w.writerow([r["path"], "", "", "", "", r["status"], r["error"]])
                        continue
                    for rank, (i, n, p) in enumerate(r["topk"], start=1):
                        w.writerow([r["path"], rank, i, n, f"{p:.6f}", "ok", ""])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
