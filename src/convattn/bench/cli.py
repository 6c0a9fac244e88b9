"""Command line of the speed harness (``scripts/benchmark.py``)."""
import os
import sys

from ..layers.targets import resolve_target
from ..utils.cli import ArgumentParser, argument_type
from ..utils.errors import check_writable_dir, command
from .harness import DEFAULT_SUITE, MEMORY_BATCHES, BenchConfig, environment, resolve_models, run_suite, write_reports

__all__ = ["main", "build_parser", "device_available"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Inference speed of registered models, each hybrid beside its plain backbone (ACmix paper, Table 9).",
    )
    p.add_argument("--models", nargs="+", default=None,
                   help="names or wildcards (e.g. 'acmix_*' resnet50 'xvolution_resnet50@deploy'); "
                        "default: every registered model, the paper's pairs first")
    p.add_argument("--device_target", default="CPU", type=argument_type(resolve_target, "device_target"),
                   help="CPU (default), GPU or Ascend (any case)")
    p.add_argument("--target", default=None, type=argument_type(resolve_target, "target"),
                   help="CPU, GPU or Ascend (any case): build the models in this target's formulations (default: "
                        "--device_target's), e.g. time the Ascend form on CPU")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=None,
                   help="default: 8; with --mode memory 4 and 12 (the per-image slope between them)")
    p.add_argument("--precision", default="float32", choices=["float32", "float16"])
    p.add_argument("--amp_level", default="O2", choices=["O1", "O2", "O3"], help="used with --precision float16")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (compiling) call")
    p.add_argument("--iters", type=int, default=8, help="timed steps")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all the process may use)")
    p.add_argument("--image_size", type=int, nargs=2, default=None, metavar=("H", "W"))
    p.add_argument("--timeout", type=int, default=900, help="seconds per model before it is reported as failed")
    p.add_argument("--mode", default="infer", choices=["infer", "train", "memory"],
                   help="infer: eval forward; train: one training step (forward + backward + SGD momentum update); "
                        "memory: training memory per image (three steps at each batch size, slope over the batch size "
                        "of the peak RSS and of MindSpore's memory pool on CPU, or of the device allocator's peak)")
    p.add_argument("--recompute", action="store_true",
                   help="train/memory modes: recompute each residual block in the backward pass (the config key "
                        "recompute), to measure what it saves")
    p.add_argument("--op_profile", action="store_true",
                   help="CPU: also profile a few steps per model and report the top five operator types by time")
    p.add_argument("--out", default="outputs/benchmark", help="directory for the CSV/JSON/markdown/PNG reports")
    p.add_argument("--stem", default="benchmark", help="file name stem of the reports")
    return p


def device_available(target: str) -> bool:
    import mindspore.device_context as dc

    return {"CPU": dc.cpu, "GPU": dc.gpu, "Ascend": dc.ascend}[target].is_available()


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    args = build_parser().parse_args(argv)
    check_writable_dir(args.out, "--out folder")  # before a long benchmark, not after it
    try:
        batches = args.batch_sizes or (list(MEMORY_BATCHES) if args.mode == "memory" else [8])
        cfg = BenchConfig(device_target=args.device_target, batch_sizes=tuple(batches),
                          precision=args.precision, warmup=args.warmup, iters=args.iters, threads=args.threads,
                          image_size=tuple(args.image_size) if args.image_size else None, timeout=args.timeout,
                          amp_level=args.amp_level, mode=args.mode, target=args.target,
                          op_profile=args.op_profile, recompute=args.recompute)
        if args.models:
            models = resolve_models(args.models)
        else:
            from ..models import list_models

            registered = list_models()
            models = [m for m in DEFAULT_SUITE if m.partition("@")[0] in registered]
            models += [m for m in registered if m not in models]  # every registered model, the paper's pairs first
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not device_available(args.device_target):
        print(f"error: device target {args.device_target} is not available in this MindSpore installation "
              f"(use --device_target CPU, or install the {args.device_target} build of MindSpore)", file=sys.stderr)
        return 2
    if args.threads and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, cpus)  # workers inherit the pinning
    print(f"[bench] {len(models)} models x batch sizes {list(cfg['batch_sizes'])} on {cfg['device_target']}")
    rows = run_suite(models, cfg)
    paths = write_reports(rows, environment(cfg), args.out, args.stem)
    with open(paths["md"]) as f:
        print(f.read())
    print("reports: " + ", ".join(paths.values()))
    return 0 if any(r.get("status") == "ok" for r in rows) else 1
