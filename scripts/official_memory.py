#!/usr/bin/env python3
"""Training memory per image of the OFFICIAL PyTorch networks, measured as ``benchmark.py --mode memory`` measures
convattn's.

Run it with the Python of the official-code virtual environment (PyTorch + timm 0.4.12, see the shared
official-timing tool's README), never with the project's: this file imports neither convattn nor MindSpore, and
imports torch only inside the worker, so ``--help`` and the helpers work in any Python::

    TORCH_VENV/bin/python scripts/official_memory.py --refs DIR_WITH_ACmix_VAN_SAN \\
        --models swin_tiny,acmix_swin_tiny,van_b0 --repeat 2 --out outputs/official-memory
    python scripts/official_memory.py --list

The networks are built by the shared official-timing tool ``perf_vs_official.py`` (its ``build_official`` and
model names), loaded by file path from ``--tools`` (default: the ``tools`` folder of the ``shared`` folder beside the
repository), so both tools build the same official code from the same clones (``--refs``: ACmix/, VAN/, SAN/).

Method (the one of convattn's ``benchmark.py --mode memory``, with the official timing tool's training step):
  * one fresh subprocess per (model, batch size, repeat), so the process's RSS high-water mark is that batch's
    alone; environment as that tool's ``default`` setting (OMP_NUM_THREADS=threads, ONEDNN_MAX_CPU_ISA unset);
  * torch.set_num_threads(threads) (default 2), torch.manual_seed(0), the official network built with random
    weights, model.train(); input: float32 N(0, 1) of batch x 3 x 224 x 224 and random labels from a generator
    seeded 1234; cross-entropy, torch.optim.SGD(lr=0.01, momentum=0.9), zero_grad(set_to_none=True);
  * three training steps (forward, loss, backward, optimizer step, loss.item()), then the peak RSS from
    resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux; MB here = MiB, as convattn's harness reports);
  * per model and repeat, from the peaks at the batch sizes (default 4 and 12): MB / image = the least-squares
    slope of peak over batch (with two batches: the difference over 8), fixed MB = the intercept (interpreter,
    framework, weights, gradients, momentum buffers); with --repeat N each model runs N times (all its batches
    once per pass, passes one after the other) and the table gives the range over the repeats.
Output (``--out DIR``): official_memory.json (every raw peak, the peak after the build, losses, torch / timm /
numpy / Python versions, threads, the CPU; no machine paths) and official_memory.md, a table with the columns of
convattn's memory table (model | peak MB by batch | MB / image | fixed MB | formulation = official PyTorch).
"""
import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOOLS = os.path.join(os.path.dirname(REPO), "shared", "tools")
DEFAULT_MODELS = ("swin_tiny", "acmix_swin_tiny", "acmix_resnet26", "resnet26", "resnet50", "acmix_resnet50",
                  "van_b0", "van_b1", "van_b2", "san10_pairwise", "san10_patchwise", "san19_pairwise")
BATCHES = (4, 12)   # as convattn's MEMORY_BATCHES
STEPS = 3           # as convattn's MEMORY_STEPS
FORMULATION = "official PyTorch"
MARK = "@@OFFICIAL_MEMORY@@ "
SCHEMA = 1


def load_official_tool(tools_dir):
    """perf_vs_official.py, loaded by path (stdlib-only at module level; torch is imported by its builders)."""
    path = os.path.join(tools_dir, "perf_vs_official.py")
    if not os.path.isfile(path):
        raise SystemExit("no perf_vs_official.py in the --tools folder given")
    sys.dont_write_bytecode = True     # leave no __pycache__ in the shared folder
    spec = importlib.util.spec_from_file_location("perf_vs_official", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ pure helpers (tested without torch)

def slope_intercept(points):
    """Least-squares line through (batch, peak MB) points: (MB per image, fixed MB); None with < 2 batch sizes."""
    pts = [(float(b), float(m)) for b, m in points]
    if len({b for b, _ in pts}) < 2:
        return None
    mb = sum(b for b, _ in pts) / len(pts)
    mm = sum(m for _, m in pts) / len(pts)
    slope = sum((b - mb) * (m - mm) for b, m in pts) / sum((b - mb) ** 2 for b, _ in pts)
    return slope, mm - slope * mb


def summarize(runs):
    """Per model, from its ok runs (dicts: model, repeat, batch, peak_mb): the peaks by batch over the repeats and
    each repeat's slope and intercept. Models keep the order of their first run."""
    out = {}
    for r in runs:
        s = out.setdefault(r["model"], {"peaks": {}, "mb_per_img": [], "fixed_mb": [], "failed": []})
        if r.get("status", "ok") != "ok":
            s["failed"].append("batch %s: %s" % (r.get("batch"), r.get("reason", "failed")))
            continue
        s["peaks"].setdefault(int(r["batch"]), []).append(float(r["peak_mb"]))
    for name, s in out.items():
        by_repeat = {}
        for r in runs:
            if r["model"] == name and r.get("status", "ok") == "ok":
                by_repeat.setdefault(r.get("repeat", 0), []).append((r["batch"], r["peak_mb"]))
        for rep in sorted(by_repeat):
            line = slope_intercept(by_repeat[rep])
            if line is not None:
                s["mb_per_img"].append(line[0])
                s["fixed_mb"].append(line[1])
        s["peaks"] = dict(sorted(s["peaks"].items()))
    return out


def fmt_range(values, nd=0):
    """'86' for one value (or a range that rounds to one), '85–87' for a range, '–' for none."""
    if not values:
        return "–"
    lo, hi = "%.*f" % (nd, min(values)), "%.*f" % (nd, max(values))
    return lo if lo == hi else "%s–%s" % (lo, hi)


def memory_markdown(summary):
    """The table of convattn's memory_markdown (same columns), values as ranges over the repeats."""
    lines = []
    for name, s in summary.items():
        if not s["mb_per_img"]:
            why = "; ".join(s["failed"]) or "fewer than two batch sizes measured"
            lines.append("| `%s` | failed: %s | – | – | %s |" % (name, why[:160], FORMULATION))
            continue
        peaks = ", ".join("%d: %s" % (b, fmt_range(v)) for b, v in s["peaks"].items())
        lines.append("| `%s` | %s | **%s** | %s | %s |" % (name, peaks, fmt_range(s["mb_per_img"]),
                                                           fmt_range(s["fixed_mb"]), FORMULATION))
    if not lines:
        return ""
    return ("\nTraining memory (peak after three training steps; slope over the batch size = per image):\n\n"
            "| model | peak MB by batch | MB / image | fixed MB | formulation |\n|---|---|---:|---:|---|\n"
            + "\n".join(lines) + "\n")


# ------------------------------------------------------------------ worker (torch venv only)

def worker(spec):
    """One (model, batch) in THIS fresh process: build, STEPS training steps, peak RSS."""
    import resource

    import numpy as np
    import torch

    pvo = load_official_tool(spec["tools"])
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = pvo.build_official(spec["name"], spec["refs"])
    from importlib.metadata import version
    res = dict(model=spec["name"], batch=spec["batch"], repeat=spec["repeat"],
               params_m=sum(p.numel() for p in model.parameters()) / 1e6,
               peak_after_build_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               threads=torch.get_num_threads(),
               versions=dict(torch=torch.__version__, timm=version("timm"), numpy=np.__version__,
                             python=platform.python_version()))
    model.train()
    g = torch.Generator().manual_seed(1234)
    b = spec["batch"]
    x = torch.randn(b, 3, 224, 224, generator=g)
    lbl = torch.randint(0, 1000, (b,), generator=g)
    crit = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), lbl)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    res.update(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, losses=losses,
               steps=spec["steps"], train_s=time.perf_counter() - t0, status="ok")
    return res


def _worker_main(spec_json):
    spec = json.loads(spec_json)
    try:
        res = worker(spec)
    except Exception as e:  # reported as the run's reason; the driver goes on
        where = ["%s:%d %s" % (os.path.basename(f.filename), f.lineno, f.name)
                 for f in traceback.extract_tb(e.__traceback__)[-3:]]
        res = dict(model=spec["name"], batch=spec["batch"], repeat=spec["repeat"], status="error",
                   reason=("%s: %s" % (type(e).__name__, e))[:600], where=where)
    sys.stdout.flush()
    print("\n" + MARK + json.dumps(res), flush=True)


# ------------------------------------------------------------------ driver

def run_one(pvo, spec, env, timeout, roots):
    wd = tempfile.mkdtemp(prefix="official_memory_")
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)], env=env,
                           cwd=wd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(status="error", reason="timed out after %d s" % timeout)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            res = json.loads(line[len(MARK):])
            if res.get("reason"):
                res["reason"] = pvo.scrub(res["reason"], roots)
            return res
    why = "killed (out of memory?)" if p.returncode in (-9, 137) else "exit code %s" % p.returncode
    tail = pvo.scrub((p.stderr or p.stdout).strip()[-400:], roots)
    return dict(status="error", reason="worker died without a result (%s): %s" % (why, tail))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 2 and argv[0] == "--_worker":
        _worker_main(argv[1])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated official model names")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes (default 4,12)")
    ap.add_argument("--repeat", type=int, default=1, help="measure each model N times; the table gives the range")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--refs", default=os.environ.get("PERF_REFS", "refs"),
                    help="folder holding the official clones ACmix/, VAN/, SAN/")
    ap.add_argument("--tools", default=DEFAULT_TOOLS, help="folder holding perf_vs_official.py (default: the "
                    "shared tools folder beside the repository)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per (model, batch) process")
    ap.add_argument("--out", default="outputs/official-memory", help="folder for official_memory.json / .md")
    ap.add_argument("--list", action="store_true", help="list the model names and their official sources")
    args = ap.parse_args(argv)
    pvo = load_official_tool(os.path.abspath(args.tools))
    if args.list:
        for m in pvo.MODELS:
            print("%-18s %s" % (m["name"], m["source"]))
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in pvo.MODEL_INDEX]
    if unknown:
        ap.error("unknown model(s) %s; known: %s" % (", ".join(unknown), ", ".join(pvo.MODEL_INDEX)))
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if len(set(batches)) < 2 or min(batches) < 1 or args.repeat < 1 or args.threads < 1:
        ap.error("need two or more distinct batch sizes >= 1, --repeat >= 1 and --threads >= 1")
    refs = {k: os.path.abspath(os.path.join(args.refs, k)) for k in ("ACmix", "VAN", "SAN")}
    missing = [k for k, v in refs.items() if not os.path.isdir(v)]
    if missing:
        ap.error("--refs: no clone of %s in the folder given" % ", ".join(missing))
    os.makedirs(args.out, exist_ok=True)
    tools = os.path.abspath(args.tools)
    roots = [(v, k) for k, v in refs.items()] + [(tools, "tools"), (REPO, "repo"), (sys.prefix, "<python>")]
    env = pvo._env_for("default", args.threads)   # the timing tool's environment, ONEDNN_MAX_CPU_ISA unset
    doc = dict(tool=os.path.basename(__file__), schema=SCHEMA, framework="pytorch-official",
               date=time.strftime("%Y-%m-%d"), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), host=pvo.cpu_info(),
               method=dict(batches=batches, steps=STEPS, threads=args.threads, repeat=args.repeat,
                           input="float32 N(0,1), batch x 3 x 224 x 224, labels random, generator seed 1234",
                           train_step="model.train(), CrossEntropyLoss, torch.optim.SGD(lr=0.01, momentum=0.9), "
                                      "zero_grad(set_to_none=True), backward, step, loss.item()",
                           peak="resource.getrusage(RUSAGE_SELF).ru_maxrss / 1024 (MiB) after the steps, one "
                                "fresh process per (model, batch, repeat)",
                           per_image="least-squares slope of peak over batch per repeat; fixed = intercept",
                           env=dict(OMP_NUM_THREADS=env.get("OMP_NUM_THREADS"),
                                    ONEDNN_MAX_CPU_ISA=env.get("ONEDNN_MAX_CPU_ISA", "unset"))),
               versions=None, models={n: dict(family=pvo.MODEL_INDEX[n]["family"],
                                                source=pvo.MODEL_INDEX[n]["source"]) for n in names},
               runs=[])
    json_path, md_path = os.path.join(args.out, "official_memory.json"), os.path.join(args.out, "official_memory.md")

    def save():
        doc["summary"] = summarize(doc["runs"])
        with open(json_path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(json_path + ".tmp", json_path)

    for rep in range(args.repeat):
        for name in names:
            for b in batches:
                spec = dict(name=name, batch=b, repeat=rep, steps=STEPS, threads=args.threads, refs=refs,
                            tools=tools)
                res = run_one(pvo, spec, env, args.timeout, roots)
                res.update(model=name, batch=b, repeat=rep)
                if res.get("status") == "ok":
                    doc["versions"] = doc["versions"] or res.pop("versions", None)
                    res.pop("versions", None)
                    print("[official-memory] %s batch %d (pass %d): peak %.0f MB (after build %.0f MB), %.1f s"
                          % (name, b, rep + 1, res["peak_mb"], res["peak_after_build_mb"], res["train_s"]),
                          flush=True)
                else:
                    print("[official-memory] %s batch %d (pass %d): FAILED %s" % (name, b, rep + 1, res["reason"]),
                          flush=True)
                doc["runs"].append(res)
                save()
    v = doc["versions"] or {}
    head = ("Official PyTorch code (torch %s, timm %s), CPU, %d threads, %s, %d training steps at batch %s, "
            "%d repeat(s)\n" % (v.get("torch", "?"), v.get("timm", "?"), args.threads, doc["date"], STEPS,
                                " and ".join(map(str, batches)), args.repeat))
    md = head + memory_markdown(doc["summary"])
    with open(md_path, "w") as f:
        f.write(md)
    print(md)
    print("reports: %s, %s" % (json_path, md_path))
    return 0 if any(r.get("status") == "ok" for r in doc["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
