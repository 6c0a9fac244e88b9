"""Projected device memory of the Ascend recipes (``configs/*/*_ascend.yaml``) against an Ascend 910A's 32 GB.

Per recipe: activations (the measured per-image slope of training memory, at float16, times the per-device
micro-batch) + parameter state (bytes per parameter, :func:`state_bytes_per_param`) + a fixed allowance for what
neither covers (:data:`FIXED_GB`). The slopes are measured by the harness's ``--mode memory`` on CPU, in the
Ascend formulation of each network (``target='Ascend'``), and kept in ``configs/memory_slopes.yaml``
(:func:`measure` writes it); :func:`markdown_table` renders the table of ``configs/README.md``
(``<!-- recipe-memory:begin/end -->``), which ``scripts/recipe_memory.py --write`` regenerates and ``--check``
compares, failing also when a recipe projects over :data:`LIMIT_GB`.

GB here is 2**30 bytes, MB 2**20 (the harness's RSS unit).
"""
import datetime
import glob
import os
import platform
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import yaml

__all__ = ["LIMIT_GB", "FIXED_GB", "FP16_FACTOR", "FP16_FACTOR_HIGH", "CONV_BN_FAMILIES", "DEVICE", "MARKER",
           "Recipe", "read_recipes", "read_slopes", "write_slopes", "measured_slope", "fp16_factor",
           "state_bytes_per_param", "project", "projections", "markdown_table", "measure", "fitting_accumulation", "check", "default_paths"]

LIMIT_GB = 30.0  # what a recipe may project per device: an Ascend 910A has 32 GB of HBM; 2 GB stay free
DEVICE = "Ascend 910A, 32 GB"
# Device memory that neither the per-image slope nor the parameter state covers: the HCCL communication buffer
# (HCCL_BUFFSIZE, 200 MB by default, per communicator), operator workspaces, the runtime's static memory and the
# data-sink queue's device buffers (a 128-image float32 224x224 batch is 74 MB). Not measured (no Ascend device
# here): a stated allowance.
FIXED_GB = 2.0
# float16 activations / float32 activations, used only for a model with no measured O2 slope. Under O2 every cell
# runs in float16 but the norm layers (BatchNorm, LayerNorm: mindspore.amp's O2 black list), whose inputs are kept
# for the backward pass in float32. Counting the tensors a block keeps for the backward pass: a transformer block
# (two LayerNorm inputs of C per token among ~16 C, attention maps aside) ~0.56, a VAN block (two BatchNorm inputs
# among ~23-35 C) ~0.54, a convolution-BatchNorm-ReLU chain (4 + 2 bytes of 4 + 4) 0.75. So FP16_FACTOR (0.6) for
# transformers and VAN, FP16_FACTOR_HIGH (0.75) for the families whose convolutions each feed a BatchNorm
# (CONV_BN_FAMILIES, by model-name prefix); the table also states the largest projection were every network at 0.75.
FP16_FACTOR = 0.6
FP16_FACTOR_HIGH = 0.75
CONV_BN_FAMILIES = ("resnet", "acmix_resnet", "san", "acmix_san", "xvolution_")
MARKER = "recipe-memory"
# bytes per parameter, by what holds them (see state_bytes_per_param)
OPTIMIZER_STATES = {"adamw": 2, "momentum": 1}  # float32 tensors of a parameter's shape per optimizer

_LAUNCH = re.compile(r"run_distribute_train(?:_ascend)?\.sh\s+\S+\s+\S+\s+(\d+)")
_GLOBAL = re.compile(r"global batch (\d+)", re.I)


def default_paths(root: Optional[str] = None) -> Dict[str, str]:
    """The repository's recipe folder, slope file and README (``root``: the repository; default: this checkout)."""
    root = Path(root) if root else Path(__file__).resolve().parents[3]
    return {"configs": str(root / "configs"), "slopes": str(root / "configs" / "memory_slopes.yaml"),
            "readme": str(root / "configs" / "README.md")}


class Recipe(dict):
    """One Ascend recipe: ``path`` (relative to the configs folder), ``model``, ``batch_size`` (per device, the
    micro-batch), ``accumulation_steps``, ``devices`` (from its launch line; 1 when ``distribute`` is off),
    ``global_batch`` (their product), ``stated_global`` (the header's "global batch N", or None), ``amp_level``,
    ``opt``, ``ema``, ``distribute``, ``image_size``, ``num_classes``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _read_recipe(path: str, configs: str) -> Recipe:
    from ..engine.config import DEFAULTS, load_config

    cfg = {**DEFAULTS, **load_config(path)}
    with open(path, encoding="utf-8") as f:
        header = "".join(line for line in f if line.startswith("#"))
    launch = _LAUNCH.search(header)
    if cfg["distribute"]:
        if not launch:
            raise ValueError(f"{path}: distribute is on but the header has no 'Launch: bash "
                             "scripts/run_distribute_train.sh CONFIG DATA N Ascend' line giving the device count")
        devices = int(launch.group(1))
    else:
        devices = 1
    stated = _GLOBAL.search(header)
    accum = int(cfg["accumulation_steps"])
    return Recipe(path=os.path.relpath(path, configs), model=cfg["model"], batch_size=int(cfg["batch_size"]),
                  accumulation_steps=accum, devices=devices, global_batch=int(cfg["batch_size"]) * devices * accum,
                  stated_global=int(stated.group(1)) if stated else None, amp_level=cfg["amp_level"],
                  opt=cfg["opt"], ema=bool(cfg["ema"]), distribute=bool(cfg["distribute"]),
                  image_size=int(cfg["image_size"] or 224), num_classes=int(cfg["num_classes"]))


def read_recipes(configs: str) -> List[Recipe]:
    """Every ``<configs>/*/*_ascend.yaml``, sorted by path."""
    paths = sorted(glob.glob(os.path.join(configs, "*", "*_ascend.yaml")))
    if not paths:
        raise ValueError(f"no Ascend recipe (*/*_ascend.yaml) under {configs}")
    return [_read_recipe(p, configs) for p in paths]


_SLOPES_HEADER = """\
# Training memory per image of every model an Ascend recipe trains, in its Ascend formulation, measured on CPU by
# `python scripts/recipe_memory.py --measure MODEL ...|all` (the harness's --mode memory: three training steps at
# each batch, peak process RSS and peak of MindSpore's memory pool, slope between the batches). Written by that
# command; do not edit by hand. Per model and precision: mb_per_img (the RSS slope), fixed_mb (its intercept:
# process, weights, gradients, SGD state), peak_mb by batch; pool_mb_per_img, pool_fixed_mb, pool_peak_mb: the same
# from the pool (the graph's tensors; the projection uses it where present). float16 = AMP O2 (the Ascend recipes'
# level). params_m / trainable_m: at 1000 classes.
# Read by convattn.bench.recipe_memory (the table in configs/README.md).
"""


def read_slopes(path: str) -> Dict[str, dict]:
    """``model -> entry`` from the slope file (empty when the file does not exist)."""
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return dict(data.get("models") or {})


def write_slopes(path: str, models: Dict[str, dict]) -> None:
    text = _SLOPES_HEADER + yaml.safe_dump({"models": {k: models[k] for k in sorted(models)}}, sort_keys=True,
                                           default_flow_style=None, width=120)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def state_bytes_per_param(recipe: dict) -> Dict[str, float]:
    """Bytes per parameter (trainable parameters for the gradient-sized terms) that the recipe keeps on a device:
    float32 weights; under AMP O2/O3 a float16 copy of each weight (the casts the cells insert, counted as all alive
    at once); float32 gradients; a second gradient-sized buffer for the all-reduce output when distributed; the
    optimizer's float32 moments (AdamW 2, momentum 1); the EMA's float32 copy; the accumulators when
    ``accumulation_steps`` > 1."""
    amp = recipe.get("amp_level", "O0") not in (None, "O0", "O1")
    opt = recipe.get("opt", "adamw")
    if opt not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer '{opt}'; known: {sorted(OPTIMIZER_STATES)}")
    return {"weights": 4.0 + (2.0 if amp else 0.0), "gradients": 4.0 + (4.0 if recipe.get("distribute") else 0.0),
            "optimizer": 4.0 * OPTIMIZER_STATES[opt], "ema": 4.0 if recipe.get("ema") else 0.0,
            "accumulators": 4.0 if int(recipe.get("accumulation_steps", 1)) > 1 else 0.0}


def fp16_factor(model: str) -> float:
    """The float16 factor of ``model``'s family: :data:`FP16_FACTOR_HIGH` for :data:`CONV_BN_FAMILIES`, else
    :data:`FP16_FACTOR`."""
    return FP16_FACTOR_HIGH if model.startswith(CONV_BN_FAMILIES) else FP16_FACTOR


def measured_slope(entry: dict, precision: str) -> Optional[Dict[str, object]]:
    """``{'mb_per_img', 'source'}`` of ``entry``'s ``precision``: the memory pool's slope where it was read (the
    graph's tensors, what a device allocator holds), else the process RSS slope (an upper bound: it also holds
    MindSpore's CPU kernels' private scratch, 2.5-4x the pool for the transformer forms; scripts/README.md,
    "Training memory per image"); None when nothing was measured."""
    m = entry.get(precision) or {}
    if m.get("pool_mb_per_img") is not None:
        return {"mb_per_img": float(m["pool_mb_per_img"]), "source": "pool"}
    if m.get("mb_per_img") is not None:
        return {"mb_per_img": float(m["mb_per_img"]), "source": "RSS"}
    return None


def fp16_slope(entry: dict, factor: float = FP16_FACTOR) -> Dict[str, object]:
    """``{'mb_per_img', 'source'}``: the measured O2 slope, else the float32 slope (pool, else RSS) times
    ``factor``."""
    o2 = measured_slope(entry, "float16")
    if o2 is not None:
        return {"mb_per_img": o2["mb_per_img"], "source": f"O2 {o2['source']}"}
    fp32 = measured_slope(entry, "float32")
    if fp32 is None:
        raise ValueError("no measured slope")
    return {"mb_per_img": fp32["mb_per_img"] * factor, "source": f"{fp32['source']} fp32 x {factor:g}"}


def project(recipe: dict, entry: dict, factor: Optional[float] = None) -> dict:
    """Projected device memory (GB) of ``recipe`` from its model's slope ``entry``: ``activations_gb``,
    ``state_gb``, ``fixed_gb``, ``total_gb``, ``fits`` (total <= :data:`LIMIT_GB`), ``mb_per_img`` and its
    ``source``. The activations scale with the micro-batch (``batch_size``), not with the global batch. ``factor``:
    the float16 factor (default: :func:`fp16_factor` of the recipe's model)."""
    amp = recipe.get("amp_level", "O0") not in (None, "O0")
    if amp:
        slope = fp16_slope(entry, fp16_factor(recipe["model"]) if factor is None else factor)
    else:
        slope = measured_slope(entry, "float32")
        slope = {"mb_per_img": slope["mb_per_img"], "source": f"{slope['source']} fp32"}
    trainable = float(entry.get("trainable_m", entry["params_m"])) * 1e6
    total = float(entry["params_m"]) * 1e6
    per = state_bytes_per_param(recipe)
    state = ((per["weights"] + per["ema"]) * total
             + (per["gradients"] + per["optimizer"] + per["accumulators"]) * trainable)
    act = slope["mb_per_img"] * int(recipe["batch_size"]) / 1024.0
    state_gb = state / 2 ** 30
    out = {"activations_gb": act, "state_gb": state_gb, "fixed_gb": FIXED_GB, "total_gb": act + state_gb + FIXED_GB,
           **slope}
    out["fits"] = out["total_gb"] <= LIMIT_GB
    return out


def fitting_accumulation(recipe: dict, entry: dict) -> Optional[dict]:
    """The smallest ``accumulation_steps`` (the recipe's own first) whose micro-batch divides the recipe's per-device
    batch evenly and fits: ``{'batch_size', 'accumulation_steps', 'total_gb'}``, keeping the global batch; None when
    even a micro-batch of 1 does not fit."""
    per_device = int(recipe["batch_size"]) * int(recipe.get("accumulation_steps", 1))
    for n in range(1, per_device + 1):
        if per_device % n:
            continue
        trial = {**recipe, "batch_size": per_device // n, "accumulation_steps": n}
        p = project(trial, entry)
        if p["fits"]:
            return {"batch_size": per_device // n, "accumulation_steps": n, "total_gb": p["total_gb"]}
    return None


def projections(recipes: Sequence[dict], slopes: Dict[str, dict], factor: Optional[float] = None) -> List[dict]:
    """One row per recipe: the recipe, its projection (or ``error``: no slope, or one at another image size)."""
    rows = []
    for r in recipes:
        entry = slopes.get(r["model"])
        if entry is None:
            rows.append({"recipe": r, "error": f"no slope for {r['model']}: run scripts/recipe_memory.py --measure "
                                               f"{r['model']}"})
            continue
        if int(entry.get("image_size", 224)) != int(r["image_size"]):
            rows.append({"recipe": r, "error": f"{r['model']} measured at {entry.get('image_size')}, the recipe "
                                               f"trains at {r['image_size']}: re-measure"})
            continue
        rows.append({"recipe": r, **project(r, entry, factor)})
    return rows


def _setting(r: dict) -> str:
    if int(r["accumulation_steps"]) > 1:
        return f"accumulation_steps {r['accumulation_steps']} (micro-batch {r['batch_size']})"
    return "as published"


def markdown_table(rows: Sequence[dict], slopes: Dict[str, dict]) -> str:
    """The generated block of configs/README.md: a line naming the generator and the constants, then the table."""
    dates = sorted({str(e.get("date", ""))[:10] for e in slopes.values() if e.get("date")})
    versions = sorted({str(e.get("mindspore")) for e in slopes.values() if e.get("mindspore")})
    ok = [r for r in rows if "error" not in r]
    high = [r for r in projections([r["recipe"] for r in ok], slopes, FP16_FACTOR_HIGH)
            if not r["source"].startswith("O2")]
    worst = max(high, key=lambda r: r["total_gb"], default=None)
    over = [r["recipe"]["path"] for r in high if not r["fits"]]
    sensitivity = (f" Were every network at the float16 factor {FP16_FACTOR_HIGH:g}, the largest projection "
                   f"would be {worst['total_gb']:.1f} GB (`{worst['recipe']['path']}`); "
                   + (f"over the limit: {', '.join(f'`{p}`' for p in over)}." if over
                      else "every recipe would still fit.")
                   if worst else "")
    lines = [f"Generated by `python scripts/recipe_memory.py --write` from `configs/memory_slopes.yaml` (measured "
             f"{dates[0] if dates else '–'}{' to ' + dates[-1] if len(dates) > 1 else ''}, MindSpore "
             f"{', '.join(versions) or '–'}). Limit {LIMIT_GB:g} GB per device ({DEVICE}); fixed allowance "
             f"{FIXED_GB:g} GB; where no O2 slope is measured, float16 = float32 x {FP16_FACTOR_HIGH:g} for the "
             f"convolution-BatchNorm families ({', '.join(f'`{p}*`' for p in CONV_BN_FAMILIES)}), x {FP16_FACTOR:g} "
             f"for the others; GB = 2^30 bytes."
             + sensitivity, "",
             f"| recipe | model | batch/device × devices × accum = global | MB/img fp16 (source) | activations GB | "
             f"params+grads+optimizer GB | projected GB | fits {LIMIT_GB:g} GB ({DEVICE}) | setting |",
             "|---|---|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        r = row["recipe"]
        batch = f"{r['batch_size']} × {r['devices']} × {r['accumulation_steps']} = {r['global_batch']}"
        if "error" in row:
            lines.append(f"| `{r['path']}` | `{r['model']}` | {batch} | – | – | – | – | **no**: "
                         f"{row['error']} | {_setting(r)} |")
            continue
        lines.append(f"| `{r['path']}` | `{r['model']}` | {batch} | {row['mb_per_img']:.0f} ({row['source']}) | "
                     f"{row['activations_gb']:.1f} | {row['state_gb']:.2f} | {row['total_gb']:.1f} | "
                     f"{'yes' if row['fits'] else '**no**'} | {_setting(r)} |")
    return "\n".join(lines)


def render(configs: str, slopes_path: str) -> str:
    slopes = read_slopes(slopes_path)
    return markdown_table(projections(read_recipes(configs), slopes), slopes)


def _block(readme: str) -> Optional[str]:
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    m = re.search(rf"<!-- {MARKER}:begin -->\n(.*?)<!-- {MARKER}:end -->", text, re.S)
    return m.group(1).rstrip("\n") if m else None


def check(configs: str, slopes_path: str, readme: str) -> List[str]:
    """Problems, one line each (none: every recipe has a slope, fits, keeps the global batch its header states (a
    recipe over several devices must state one), and the README's table is the one generated now)."""
    slopes = read_slopes(slopes_path)
    recipes = read_recipes(configs)
    rows = projections(recipes, slopes)
    problems = []
    for row in rows:
        r = row["recipe"]
        if "error" in row:
            problems.append(f"{r['path']}: {row['error']}")
        elif not row["fits"]:
            fix = fitting_accumulation(r, slopes[r["model"]])
            hint = (f"; batch_size {fix['batch_size']} with accumulation_steps {fix['accumulation_steps']} projects "
                    f"{fix['total_gb']:.1f} GB at the same global batch" if fix else "; no micro-batch fits")
            problems.append(f"{r['path']}: projects {row['total_gb']:.1f} GB > {LIMIT_GB:g} GB{hint}")
        if r["stated_global"] is None and r["devices"] > 1:
            problems.append(f"{r['path']}: the header states no 'global batch N' (needed to show it is kept)")
        elif r["stated_global"] is not None and r["stated_global"] != r["global_batch"]:
            problems.append(f"{r['path']}: header says global batch {r['stated_global']}, the recipe gives "
                            f"{r['batch_size']} x {r['devices']} x {r['accumulation_steps']} = {r['global_batch']}")
    block = _block(readme)
    if block is None:
        problems.append(f"{readme}: no <!-- {MARKER}:begin/end --> block")
    elif block != markdown_table(rows, slopes):
        problems.append(f"{readme}: the {MARKER} table is stale; run python scripts/recipe_memory.py --write")
    return problems


def _measure_one(model: str, image_size: int, precision: str, timeout: int, log: Callable,
                 device_target: str = "CPU") -> dict:
    from .harness import MEMORY_BATCHES, BenchConfig, run_suite

    cfg = BenchConfig(device_target=device_target, target="Ascend", mode="memory", batch_sizes=MEMORY_BATCHES,
                      precision=precision, amp_level="O2", image_size=(image_size, image_size), timeout=timeout)
    rows = run_suite([model], cfg, log=log)
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed or not ok or ok[0].get("mem_mb_per_img") is None:
        why = "; ".join(str(r.get("error")) for r in failed) or "fewer than two batch sizes measured"
        raise RuntimeError(f"{model} ({precision}): {why}")
    out = {"rows": ok, "mb_per_img": round(float(ok[0]["mem_mb_per_img"]), 1),
           "fixed_mb": round(float(ok[0]["mem_fixed_mb"]), 1),
           "peak_mb": {int(r["batch_size"]): round(float(r["peak_mem_mb"]), 1) for r in ok}}
    if ok[0].get("pool_mb_per_img") is not None:  # CPU: the memory pool's peak, the graph's tensors
        out.update(pool_mb_per_img=round(float(ok[0]["pool_mb_per_img"]), 1),
                   pool_fixed_mb=round(float(ok[0]["pool_fixed_mb"]), 1),
                   pool_peak_mb={int(r["batch_size"]): round(float(r["pool_peak_mb"]), 1) for r in ok})
    return out


def measure(models: Sequence[str], configs: str, slopes_path: str, precisions=("float32",), timeout: int = 1800,
            device_target: str = "CPU", log: Callable = print) -> Dict[str, dict]:
    """Measure each model's slope (Ascend formulation; on CPU: peak process RSS, on a device: the allocator's peak)
    at the image size its Ascend recipes train at, in each precision, and write it into the slope file after each
    model (an interrupted run keeps what it measured). ``models``: names, or ``['all']`` for every model an Ascend
    recipe trains. A model's entry is replaced as a whole."""
    import mindspore as ms

    recipes = read_recipes(configs)
    sizes: Dict[str, set] = {}
    for r in recipes:
        sizes.setdefault(r["model"], set()).add(int(r["image_size"]))
    names = sorted(sizes) if list(models) == ["all"] else list(dict.fromkeys(models))
    unknown = [m for m in names if m not in sizes]
    if unknown:
        raise ValueError(f"no Ascend recipe trains {unknown}; models of the Ascend recipes: {sorted(sizes)}")
    for m in names:
        if len(sizes[m]) > 1:
            raise ValueError(f"{m}: Ascend recipes train it at several image sizes {sorted(sizes[m])}; the slope "
                             "file holds one per model")
    slopes = read_slopes(slopes_path)
    failed = []
    for m in names:
        (size,) = sizes[m]
        t0 = time.perf_counter()
        entry = {"image_size": size, "target": "Ascend", "measured_on": device_target, "batches": None,
                 "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "mindspore": ms.__version__}
        try:
            results = {p: _measure_one(m, size, p, timeout, log, device_target) for p in precisions}
        except RuntimeError as exc:  # the others are still measured; the run fails at the end
            log(f"[recipe-memory] {exc}; its entry is left as it was")
            failed.append(str(exc))
            continue
        for precision, res in results.items():
            first = res.pop("rows")[0]
            entry.update(params_m=round(float(first["params_m"]), 4), trainable_m=round(float(first["trainable_m"]), 4),
                         formulation=first["formulation"], batches=sorted(res["peak_mb"]))
            entry[precision] = res
        slopes[m] = entry
        write_slopes(slopes_path, slopes)
        log(f"[recipe-memory] {m}: " + ", ".join(f"{p} {entry[p]['mb_per_img']:.0f} MB/img" for p in precisions)
            + f" ({time.perf_counter() - t0:.0f} s)")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(names)} models not measured: " + " | ".join(failed))
    return slopes
