"""Inference speed harness: the ACmix paper's comparison (each hybrid beside its plain backbone) on any backend.

Method (timm ``benchmark.py`` adapted to MindSpore): eval mode, GRAPH mode, random input at the model's
default size; the first call (graph compile + one run) is timed on its own and reported as compile
seconds; ``warmup`` untimed steps follow, then ``iters`` timed steps, each closed by a device sync
(``mindspore.runtime.synchronize()`` on Ascend/GPU, reading the output back on CPU). Each model runs in
its own subprocess, so one failure (or out-of-memory) cannot take the suite down, compile caches do not
leak between models, and peak memory (process RSS high-water mark on CPU, the allocator's peak on a
device) belongs to that model alone. A batch that does not fit is retried at half the size. ``mode='train'``
(``--mode train``) times one training step instead: forward + cross-entropy + backward + SGD(momentum) update.
``mode='memory'`` (``--mode memory``) measures training memory: three training steps per process at each of two
batch sizes (default 4 and 12), the peak read after them, and per model the per-image slope between the two
batches (:func:`memory_slopes`), which removes the framework, the weights and the optimizer state. On CPU it
reads two peaks: the process RSS high-water and the peak of MindSpore's memory pool, which holds every tensor of the
graph (activations, gradients, parameters) and is what a device allocator holds on Ascend/GPU. The RSS also holds
what MindSpore's CPU kernels allocate privately beside the pool (e.g. the scratch of ``Transpose`` and ``Softmax``,
about four copies of their input, measured one operator at a time); those kernels do not run on a device, so the
pool's slope is the figure to project device memory from (:func:`pool_peak_mb` reads it from the worker's exit report,
``MS_DEV_RUNTIME_CONF=memory_statistics:True``).
"""
import csv
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

__all__ = ["BenchConfig", "run_one", "run_suite", "baseline_of", "DEFAULT_SUITE", "write_reports", "resolve_models",
           "op_profile", "top_ops", "memory_slopes", "pool_peak_mb", "MEMORY_BATCHES"]

MEMORY_BATCHES = (4, 12)  # the two batch sizes of --mode memory (the per-image slope between them)
MEMORY_STEPS = 3  # training steps per memory measurement

# The paper's table (each baseline beside its ACmix version), then the other families.
DEFAULT_SUITE = [
    "resnet26", "acmix_resnet26", "resnet38", "acmix_resnet38", "resnet50", "acmix_resnet50",
    "san10_pairwise", "san10_patchwise", "san15_pairwise", "san15_patchwise", "san19_pairwise", "san19_patchwise",
    "acmix_san10", "acmix_san15", "acmix_san19",
    "pvt_tiny", "acmix_pvt_tiny", "pvt_small", "acmix_pvt_small",
    "swin_tiny", "acmix_swin_tiny", "swin_small", "acmix_swin_small",
    "van_b0", "van_b1", "van_b2", "van_b3",
    "resnet34", "xvolution_resnet34", "xvolution_resnet34@deploy", "xvolution_resnet50", "xvolution_resnet50@deploy",
    "deit_tiny", "deit_tiny_relu", "deit_tiny_dw", "deit_small", "deit_small_relu", "deit_small_dw",
    "swin_tiny_relu", "swin_tiny_dw",
]

_SAN_BASE = {"10": "resnet26", "15": "resnet38", "19": "resnet50"}


def baseline_of(name: str) -> Optional[str]:
    """The plain backbone a hybrid is compared with (the ACmix paper's pairs; SAN against its ResNet of equal depth)."""
    base, _, variant = name.partition("@")
    if variant:
        return base  # e.g. X-volution deploy form vs its training form
    if base.startswith("acmix_san"):
        return f"san{base[len('acmix_san'):]}_patchwise"  # the ACmix README's SAN baselines are patchwise
    if base.startswith("acmix_"):
        return base[len("acmix_"):]
    if base.startswith("san") and "_" in base:
        return _SAN_BASE.get(base[3:5])
    if base.startswith("xvolution_"):
        return base[len("xvolution_"):]
    for suffix in ("_relu", "_dw"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return None


class BenchConfig(dict):
    """Settings of one run: device_target, batch_sizes, precision ('float32'|'float16'), warmup, iters, threads,
    target (the formulations the models are built in; None: device_target's), op_profile (CPU: after the timed
    steps, profile a few more with MindSpore's profiler and report the time per operator type), recompute (train and
    memory modes: :func:`convattn.models.set_recompute` on the network, as the config key ``recompute`` does)."""

    DEFAULTS = {"device_target": "CPU", "batch_sizes": (8,), "precision": "float32", "warmup": 2, "iters": 8,
                "threads": None, "image_size": None, "timeout": 900, "amp_level": "O2",
                "model_kwargs": {}, "mode": "infer", "target": None, "op_profile": False, "recompute": False}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.DEFAULTS)
        if unknown:
            raise KeyError(f"unknown benchmark settings {sorted(unknown)}; valid: {sorted(self.DEFAULTS)}")
        super().__init__({**self.DEFAULTS, **kwargs})
        if any(int(b) < 1 for b in self["batch_sizes"]):
            raise ValueError(f"batch sizes must be >= 1, got {list(self['batch_sizes'])}")
        if self["precision"] not in ("float32", "float16"):
            raise ValueError(f"precision must be 'float32' or 'float16', got '{self['precision']}'")
        if self["mode"] not in ("infer", "train", "memory"):
            raise ValueError(f"mode must be 'infer' (forward), 'train' (forward + backward + SGD step) or 'memory' "
                             f"(training memory per image), got '{self['mode']}'")
        if int(self["iters"]) < 1 or int(self["warmup"]) < 0:
            raise ValueError("iters must be >= 1 and warmup >= 0")


def resolve_models(patterns: Sequence[str]) -> List[str]:
    """Expand names and shell wildcards against the registry (``name@deploy`` allowed); unknown names raise."""
    from ..models import list_models
    from ..models.registry import unknown_model_error

    out: List[str] = []
    for pat in patterns:
        base, _, variant = pat.partition("@")
        if variant and variant != "deploy":
            raise ValueError(f"unknown variant '@{variant}' in '{pat}'; only '@deploy' (switch_to_deploy()) exists")
        if any(c in base for c in "*?["):
            matches = list_models(base)
            if not matches:
                raise ValueError(f"no registered model matches '{base}'")
            out += [m + (f"@{variant}" if variant else "") for m in matches]
        else:
            if not list_models(base):
                raise unknown_model_error(base)
            out.append(pat)
    return list(dict.fromkeys(out))


def _describe_formulation(net) -> str:
    """Which formulation the network runs: export-safe flags, ACmix conv-path form, deploy state."""

    tags = set()
    # gathers kept only as the 'unfold' alternative of a cell that runs another attention formulation
    idle = {id(c.unfold) for _, c in net.cells_and_names()
            if getattr(c, "attn_impl", None) not in (None, "unfold") and hasattr(c, "unfold")}
    for _, c in net.cells_and_names():
        idle.update(id(g) for g in (c.idle_gathers() if hasattr(c, "idle_gathers") else ()))
    for _, cell in net.cells_and_names():
        if getattr(cell, "export_safe", None) is True:
            tags.add("export-safe")
        name = type(cell).__name__
        impl = getattr(cell, "attn_impl", None)
        if isinstance(impl, str) and not getattr(getattr(cell, "unfold", None), "export_safe", False):
            if hasattr(cell, "attention_form"):  # ACmix: the form it was built with
                impl = {"fused": "fused-kernel"}.get(cell.attention_form(), cell.attention_form())
            elif getattr(cell, "fused", False) is True:
                impl = "fused-kernel"
            elif impl == "fused":  # a stride-2 SAN layer runs its gather
                impl = "unfold"
            tags.add("attn:" + {"fast": "blocked-matmul"}.get(impl, impl))  # the window attention actually run
        elif name == "LocalWindowGather" and not cell.export_safe and id(cell) not in idle:
            tags.add("unfold-gather")
        dw = getattr(cell, "depthwise_conv", None)  # the ACmix conv path (ConvPathMixin)
        if isinstance(dw, bool):
            tags.add("acmix-conv:" + ("depthwise" if dw else "grouped"))
        if getattr(cell, "deployed", None) is True:
            tags.add("deploy-form")
    form = getattr(net, "form", None)
    if form is not None and form.cpu_backend:
        tags.add("cpu-backend")
    return ",".join(sorted(tags)) or "standard"


def _peak_memory_mb(device_target: str) -> float:
    if device_target == "CPU":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    import mindspore as ms

    return ms.runtime.max_memory_allocated() / 2 ** 20


def param_columns(net) -> dict:
    """``params_m``: every weight the network holds (frozen ones too: the X-volution deploy form freezes its merged
    weights), BatchNorm statistics aside; ``trainable_m``: the trainable ones."""
    from ..utils.params import count_parameters
    total, trainable = count_parameters(net)
    return {"params_m": total / 1e6, "trainable_m": trainable / 1e6}


def run_one(name: str, batch_size: int, cfg: BenchConfig) -> dict:
    """Benchmark one model at one batch size in THIS process (used by the subprocess worker)."""
    import numpy as np
    import mindspore as ms
    from mindspore import nn

    from ..models import create_model, get_model_cfg
    from .macs import count_macs

    base, _, variant = name.partition("@")
    ms.set_device(cfg["device_target"])
    if cfg["threads"] and cfg["device_target"] == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(int(cfg["threads"]))
        from ..layers.targets import set_cpu_backend_threads

        set_cpu_backend_threads(int(cfg["threads"]))  # the fused kernels use the same count
    size = tuple(cfg["image_size"] or get_model_cfg(base)["input_size"][1:])
    memory = cfg.get("mode", "infer") == "memory"
    train = cfg.get("mode", "infer") in ("train", "memory")
    if variant == "deploy" and train:
        raise ValueError(f"'{name}': a deploy-form network cannot train; benchmark it in infer mode")
    try:  # '@deploy': the one deploy entry point, create_model(deploy=True)
        net = create_model(base, target=cfg.get("target") or cfg["device_target"], deploy=variant == "deploy",
                           **cfg["model_kwargs"])
    except ValueError as exc:
        if variant == "deploy":
            raise ValueError(f"'{name}': {exc}; '@deploy' applies to re-parameterisable models") from None
        raise
    net.set_train(False)
    counts = param_columns(net)
    gmacs = count_macs(net, (1, 3) + size)["total"] / 1e9
    formulation = _describe_formulation(net)
    if cfg["precision"] == "float16":
        net = ms.amp.auto_mixed_precision(net, cfg["amp_level"], dtype=ms.float16)
    ms.set_context(mode=ms.GRAPH_MODE)
    x = ms.Tensor(np.random.RandomState(0).randn(batch_size, 3, *size).astype(np.float32))
    run = net
    args = (x,)
    if train:  # the trainer's step (engine.step): forward + loss + backward + SGD(momentum) update, one graph
        from ..engine.step import build_train_step

        if cfg.get("recompute"):
            from ..models import set_recompute

            set_recompute(net)
            formulation += ",recompute"

        net.set_train(True)
        loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        opt = nn.SGD(net.trainable_params(), learning_rate=1e-3, momentum=0.9)
        # float16: the network is under amp_level already; the step adds the trainer's dynamic loss scale
        train_step = build_train_step(net, loss_fn, opt,
                                      amp_level=cfg["amp_level"] if cfg["precision"] == "float16" else "O0")

        def train_loss(*inputs):
            return train_step(*inputs)[0]  # the loss
        run = train_loss
        args = (x, ms.Tensor(np.zeros((batch_size,), np.int32)))

    def step():
        out = run(*args)
        if cfg["device_target"] == "CPU":
            out.asnumpy()
        else:
            ms.runtime.synchronize()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    # memory: MEMORY_STEPS steps in all (the peak is read after them), the last ones timed
    warmup, iters = (0, MEMORY_STEPS - 1) if memory else (int(cfg["warmup"]), int(cfg["iters"]))
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    q = sorted(times)
    profile = None
    if cfg.get("op_profile"):
        if cfg["device_target"] != "CPU":
            raise ValueError("op_profile reads MindSpore's CPU operator timings; use device_target='CPU'")
        profile = op_profile(step, steps=max(1, min(int(cfg["iters"]), 3)))
    return {
        "model": name, "baseline": baseline_of(name), "batch_size": batch_size, "img_size": f"{size[0]}x{size[1]}",
        "precision": cfg["precision"], "device_target": cfg["device_target"], "mode": cfg.get("mode", "infer"),
        "imgs_per_s": batch_size / med, "ms_per_step": 1000 * med,  # both from the median step (one statistic)
        "ms_p10": 1000 * q[max(0, int(0.1 * (len(q) - 1)))], "ms_p90": 1000 * q[int(math.ceil(0.9 * (len(q) - 1)))],
        "compile_s": max(0.0, first - med), **counts, "gmacs": gmacs,
        "peak_mem_mb": _peak_memory_mb(cfg["device_target"]), "formulation": formulation, "status": "ok", "error": "",
        **({"op_profile": profile, "top_ops": top_ops(profile)} if profile is not None else {}),
    }


def _matmul_macs(shapes: List[List[int]]) -> Optional[int]:
    """Multiply-adds of a (Batch)MatMul from its two input shapes ``[..., a, b]`` and ``[..., c, d]``. Transpose
    flags are not recorded: the contracted size is the dimension both matrices share; where the two shapes are
    equal it is the last one for a batched product (``q k^T``) and the first one for a 2-D product (a Dense
    weight gradient ``dy^T x`` over the tokens) -- an estimate, exact for the layers of this zoo."""
    if len(shapes) < 2 or len(shapes[0]) < 2 or len(shapes[1]) < 2:
        return None
    (a, b), (c, d) = shapes[0][-2:], shapes[1][-2:]
    common = [k for k in (b, a) if k in (c, d)]
    if not common:
        return None
    k = common[0]
    if (a, b) == (c, d) and a != b and len(shapes[0]) == 2:
        k = a
    batch = math.prod(shapes[0][:-2]) if len(shapes[0]) > 2 else math.prod(shapes[1][:-2])
    return int(batch * (a * b // k) * (c * d // k) * k)


def _read_op_macs(path: str, steps: int) -> Dict[str, int]:
    """``op type -> multiply-adds per step`` of the (Batch)MatMul kernels, from the input shapes in the
    profiler's ``cpu_framework_*.txt`` (one ``Type;Name;id;input_1:[..];..`` line per kernel run; op names repeat
    across cells, so the lines are summed per type)."""
    macs: Dict[str, int] = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(";")
            if len(parts) < 4 or parts[0] not in ("MatMul", "BatchMatMul", "MatMulExt", "BatchMatMulExt"):
                continue
            ins = []
            for p in parts[3:]:
                if ":" in p and "[" in p:
                    try:
                        ins.append([int(v) for v in p.split(":", 1)[1].strip("[] ").split(",") if v.strip()])
                    except ValueError:
                        pass
            m = _matmul_macs(ins)
            if m is not None:
                macs[parts[0]] = macs.get(parts[0], 0) + m
    return {k: v // steps for k, v in macs.items()}


def op_profile(step, steps: int = 3) -> List[dict]:
    """Run ``step`` ``steps`` times under MindSpore's CPU profiler; return one row per operator type, slowest
    first: ``op_type``, ``ms`` (per step), ``share`` of the profiled operator time, ``calls`` (per step) and, for
    (Batch)MatMul, ``gmacs`` per step and ``gmacs_per_s`` (the profiler records no convolution output size, so
    Conv2D's multiply-adds are left to :func:`convattn.bench.macs.count_macs`)."""
    import glob
    import shutil
    import tempfile

    import mindspore as ms
    from mindspore.profiler import ProfilerActivity

    out = tempfile.mkdtemp(prefix="convattn_prof_")
    try:
        prof = ms.Profiler(output_path=out, activities=[ProfilerActivity.CPU], start_profile=True)
        for _ in range(steps):
            step()
        prof.stop()
        prof.analyse()
        found = glob.glob(os.path.join(out, "**", "cpu_op_detail_info_*.csv"), recursive=True)
        if not found:
            raise RuntimeError("MindSpore's profiler wrote no cpu_op_detail_info_*.csv; no operator timings")
        fw = glob.glob(os.path.join(os.path.dirname(found[0]), "cpu_framework_*.txt"))
        macs = _read_op_macs(fw[0], steps) if fw else {}
        types: Dict[str, dict] = {}
        with open(found[0], newline="") as f:
            for r in csv.DictReader(f):
                t = types.setdefault(r["op_type"], {"op_type": r["op_type"], "ms": 0.0, "calls": 0,
                                                    "macs": macs.get(r["op_type"], 0)})
                t["ms"] += float(r["op_total_time(ms)"]) / steps
                t["calls"] += int(r["op_occurrences"]) // steps
    finally:
        shutil.rmtree(out, ignore_errors=True)
    total = sum(t["ms"] for t in types.values()) or 1.0
    rows = []
    for t in sorted(types.values(), key=lambda t: -t["ms"]):
        g = t.pop("macs") / 1e9
        rows.append({**t, "share": t["ms"] / total, "gmacs": g if g else None,
                     "gmacs_per_s": g / (t["ms"] / 1e3) if g and t["ms"] > 0 else None})
    return rows


def top_ops(profile: Optional[List[dict]], n: int = 5) -> str:
    """``'MatMul 41% (12.0 GMAC/s), Erf 20%, ...'``: the ``n`` operator types taking most time and their shares."""
    if not profile:
        return ""
    parts = []
    for r in profile[:n]:
        rate = f" ({r['gmacs_per_s']:.1f} GMAC/s)" if r.get("gmacs_per_s") else ""
        parts.append(f"{r['op_type']} {100 * r['share']:.0f}%{rate}")
    return ", ".join(parts)


def _worker_main() -> int:
    """Subprocess entry: ``python -m convattn.bench.harness --worker NAME BATCH JSON_CFG``; prints one JSON line."""
    name, batch, cfg_json = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    from .. import apply_cpu_defaults

    apply_cpu_defaults()
    try:
        res = run_one(name, batch, BenchConfig(**json.loads(cfg_json)))
    except Exception as exc:  # reported to the parent, which records the failure and goes on
        msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        print("@@RESULT " + json.dumps({"status": "failed", "error": msg[:400]}))
        return 1
    print("@@RESULT " + json.dumps(res))
    return 0


def _is_oom(error: str) -> bool:
    e = error.lower()
    return "out of memory" in e or "memory not enough" in e or "malloc" in e or "cannot allocate" in e


_POOL_REPORT = re.compile(r"Common mem pool info:.*?peak used mem:\s*(\d+(?:\.\d+)?)M")


def pool_peak_mb(output: str) -> Optional[float]:
    """The peak of MindSpore's memory pool (MB) from a process's output with ``memory_statistics:True`` in
    ``MS_DEV_RUNTIME_CONF`` (MindSpore prints it at exit); None when the output has no such report."""
    found = _POOL_REPORT.findall(output or "")
    return max(float(v) for v in found) if found else None


def _spawn(name: str, batch: int, cfg: BenchConfig) -> dict:
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    pool = cfg.get("mode") == "memory" and cfg["device_target"] == "CPU"
    if pool:  # the pool's peak, printed by MindSpore when the worker exits
        env["MS_DEV_RUNTIME_CONF"] = ",".join(filter(None, [env.get("MS_DEV_RUNTIME_CONF"), "memory_statistics:True"]))
    cmd = [sys.executable, "-m", "convattn.bench.harness", "--worker", name, str(batch), json.dumps(dict(cfg))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=cfg["timeout"])
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {cfg['timeout']} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            res = json.loads(line[len("@@RESULT "):])
            if pool and res.get("status") == "ok":
                res["pool_peak_mb"] = pool_peak_mb(proc.stdout + "\n" + proc.stderr)
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    err = f"worker died (exit {proc.returncode}): {tail[0][:300]}"
    if proc.returncode in (-9, 137):
        err = "killed (out of memory?): " + err
    return {"status": "failed", "error": err}


def run_suite(models: Sequence[str], cfg: BenchConfig, log=print) -> List[dict]:
    rows = []
    for name in models:
        for batch in cfg["batch_sizes"]:
            b = int(batch)
            while True:
                log(f"[bench] {name} batch {b} ...")
                res = _spawn(name, b, cfg)
                if res["status"] == "failed" and (_is_oom(res["error"]) or res["error"].startswith("killed")) and b > 1:
                    log(f"[bench] {name} batch {b} did not fit ({res['error'][:80]}); retrying at {b // 2}")
                    b //= 2
                    continue
                break
            if res["status"] != "ok":
                res = {"model": name, "baseline": baseline_of(name), "batch_size": b, **res}
                log(f"[bench] {name}: FAILED {res['error']}")
            else:
                log(f"[bench] {name} batch {b}: {res['imgs_per_s']:.2f} img/s, {res['ms_per_step']:.1f} ms/step, "
                    f"compile {res['compile_s']:.1f} s, peak {res['peak_mem_mb']:.0f} MB")
            rows.append(res)
    _add_relative(rows)
    if cfg.get("mode") == "memory":
        memory_slopes(rows)
    return rows


# (peak column, its slope column, its intercept column)
_SLOPES = (("peak_mem_mb", "mem_mb_per_img", "mem_fixed_mb"), ("pool_peak_mb", "pool_mb_per_img", "pool_fixed_mb"))


def memory_slopes(rows: List[dict]) -> None:
    """Per model (and precision), from its ok rows at two or more batch sizes: ``mem_mb_per_img``, the least-squares
    slope of peak memory over the batch size (with two batches: the difference over the batch difference), and
    ``mem_fixed_mb``, the intercept (framework, weights, gradients, optimizer state); the same from the memory
    pool's peak as ``pool_mb_per_img`` / ``pool_fixed_mb``. Set on each of its rows (None where fewer than two batch
    sizes succeeded or a peak is missing)."""
    for peak, slope_key, fixed_key in _SLOPES:
        groups: Dict[tuple, List[dict]] = {}
        for r in rows:
            r.setdefault(slope_key, None)
            r.setdefault(fixed_key, None)
            if r.get("status") == "ok":
                groups.setdefault((r["model"], r.get("precision")), []).append(r)
        for group in groups.values():
            bs = [float(r["batch_size"]) for r in group]
            if len(set(bs)) < 2 or any(r.get(peak) is None for r in group):
                continue
            ms_ = [float(r[peak]) for r in group]
            mb, mm = sum(bs) / len(bs), sum(ms_) / len(ms_)
            slope = sum((b - mb) * (m - mm) for b, m in zip(bs, ms_)) / sum((b - mb) ** 2 for b in bs)
            for r in group:
                r[slope_key] = slope
                r[fixed_key] = mm - slope * mb


def _add_relative(rows: List[dict]) -> None:
    """Each hybrid's time and MAC ratios against its own baseline measured in the same run."""
    index = {(r["model"], r["batch_size"]): r for r in rows if r.get("status") == "ok"}
    for r in rows:
        base = index.get((r.get("baseline"), r.get("batch_size")))
        if r.get("status") != "ok" or base is None:
            r.update(time_ratio=None, mac_ratio=None, rel_throughput=None, defect=None)
            continue
        r["time_ratio"] = r["ms_per_step"] / base["ms_per_step"]
        r["mac_ratio"] = r["gmacs"] / base["gmacs"] if base["gmacs"] else None
        r["rel_throughput"] = r["imgs_per_s"] / base["imgs_per_s"]
        r["defect"] = bool(r["mac_ratio"] and r["time_ratio"] > 2.0 * r["mac_ratio"])


COLUMNS = ["model", "mode", "baseline", "batch_size", "img_size", "precision", "imgs_per_s", "ms_per_step", "ms_p10", "ms_p90",
           "compile_s", "params_m", "trainable_m", "gmacs", "peak_mem_mb", "mem_mb_per_img", "mem_fixed_mb", "pool_peak_mb", "pool_mb_per_img", "pool_fixed_mb", "time_ratio", "mac_ratio", "rel_throughput", "defect",
           "formulation", "top_ops", "status", "error"]


def environment(cfg: BenchConfig) -> dict:
    import mindspore as ms

    threads = cfg["threads"] or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return {"device_target": cfg["device_target"], "mindspore": ms.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "threads": threads, "cpu_count": os.cpu_count(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "settings": dict(cfg)}


def _fmt(v, nd=2):
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "**yes**" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _params(r: dict) -> str:
    """Total parameters (M), with the trainable count where it differs."""
    from ..utils.params import format_params
    if r.get("params_m") in (None, ""):
        return "–"
    trainable = r.get("trainable_m")
    return format_params(float(r["params_m"]), float(r["params_m"] if trainable in (None, "") else trainable))


def markdown(rows: List[dict], env: dict) -> str:
    head = (f"Device {env['device_target']} ({env['processor']}, {env['threads']} threads), MindSpore {env['mindspore']}, "
            f"{env['settings']['precision']}, mode {env['settings'].get('mode', 'infer')}, {env['date']}\n\n")
    lines = ["| model | batch | img/s | ms/step (p10–p90) | compile s | params (M) | GMACs | peak MB | vs baseline | "
             "time ratio | MAC ratio | >2× MAC | formulation |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| `{r['model']}` | {r.get('batch_size', '–')} | failed: {r.get('error', '')[:120]} |"
                         " | | | | | | | | | |")
            continue
        lines.append(
            f"| `{r['model']}` | {r['batch_size']} | {_fmt(r['imgs_per_s'])} | {_fmt(r['ms_per_step'], 1)} "
            f"({_fmt(r['ms_p10'], 1)}–{_fmt(r['ms_p90'], 1)}) | {_fmt(r['compile_s'], 1)} | {_params(r)} | "
            f"{_fmt(r['gmacs'])} | {_fmt(r['peak_mem_mb'], 0)} | {r['baseline'] or '–'} | {_fmt(r['time_ratio'])} | "
            f"{_fmt(r['mac_ratio'])} | {_fmt(r['defect'])} | {r['formulation']} |")
    return head + "\n".join(lines) + "\n" + memory_markdown(rows) + op_profile_markdown(rows)


def memory_markdown(rows: List[dict]) -> str:
    """``--mode memory``: one line per model, peak at each batch size, the per-image slope and the intercept."""
    seen, out = set(), []
    for r in rows:
        if r.get("mem_mb_per_img") is None or r["model"] in seen:
            continue
        seen.add(r["model"])
        peaks = ", ".join(f"{x['batch_size']}: {x['peak_mem_mb']:.0f}" for x in rows
                          if x.get("model") == r["model"] and x.get("status") == "ok")
        pool = "–" if r.get("pool_mb_per_img") is None else f"**{r['pool_mb_per_img']:.0f}**"
        out.append(f"| `{r['model']}` | {peaks} | **{r['mem_mb_per_img']:.0f}** | {r['mem_fixed_mb']:.0f} | {pool} | "
                   f"{r['formulation']} |")
    if not out:
        return ""
    return ("\nTraining memory (peak after three training steps; slope over the batch size = per image; "
            "RSS: the process high-water, pool: MindSpore's memory pool, the graph's tensors):\n\n"
            "| model | peak RSS MB by batch | RSS MB / image | fixed MB | pool MB / image | formulation |\n"
            "|---|---|---:|---:|---:|---|\n" + "\n".join(out) + "\n")


def op_profile_markdown(rows: List[dict], n: int = 5) -> str:
    """Per profiled model, the ``n`` operator types taking most time: ms per step, share, calls, GMACs, GMAC/s."""
    out = []
    for r in rows:
        prof = r.get("op_profile")
        if r.get("status") != "ok" or not prof:
            continue
        rest = sum(p["share"] for p in prof[n:])
        out += ["", f"Top {n} operator types, `{r['model']}` batch {r['batch_size']} ({r.get('mode', 'infer')}; "
                    f"share of the profiled operator time, {100 * rest:.0f}% in the other {max(0, len(prof) - n)} "
                    "types):", "",
                "| op type | ms/step | share | calls/step | GMACs/step | GMAC/s |", "|---|---:|---:|---:|---:|---:|"]
        for p in prof[:n]:
            out.append(f"| {p['op_type']} | {_fmt(p['ms'], 1)} | {100 * p['share']:.1f}% | {p['calls']} | "
                       f"{_fmt(p.get('gmacs'))} | {_fmt(p.get('gmacs_per_s'), 1)} |")
    return "\n".join(out) + ("\n" if out else "")


def bar_chart(rows: List[dict], path: str) -> None:
    """PNG bar chart of each hybrid's throughput relative to its baseline (1.0 = as fast as the baseline)."""
    from ..utils.plot import bar_chart as draw_bars

    ok = [r for r in rows if r.get("rel_throughput")]
    several = len({r["batch_size"] for r in ok}) > 1
    items = [(f"{r['model']} (batch {r['batch_size']})" if several else r["model"], r["rel_throughput"]) for r in ok]
    draw_bars(path, [n for n, _ in items], [v for _, v in items],
              title="Throughput relative to the plain baseline (same run)",
              xlabel="images/s relative to the baseline", reference=1.0, reference_label="as fast as the baseline")


def write_reports(rows: List[dict], env: dict, out_dir: str, stem: str = "benchmark") -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"{stem}.{k}") for k in ("csv", "json", "md", "png")}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in COLUMNS})
    with open(paths["json"], "w") as f:
        json.dump({"environment": env, "results": rows}, f, indent=2)
    with open(paths["md"], "w") as f:
        f.write(markdown(rows, env))
    bar_chart(rows, paths["png"])
    return paths


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    sys.exit(_worker_main())
