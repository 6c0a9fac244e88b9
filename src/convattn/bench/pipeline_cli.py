"""Command lines: ``scripts/make_fake_imagenet.py`` (the generated tree) and ``scripts/bench_pipeline.py``."""
import datetime
import os
import sys

from ..utils.cli import ArgumentParser
from .pipeline import PIPELINES, run_pipeline_bench, write_fake_imagenet, write_pipeline_reports
from ..utils.errors import command

__all__ = ["bench_main", "generate_main", "bench_parser", "generate_parser"]


def _gen_args(p):
    p.add_argument("--classes", type=int, default=10, help="class folders (default 10)")
    p.add_argument("--per_class", type=int, default=32, help="images per class (default 32)")
    p.add_argument("--seed", type=int, default=0)


def generate_parser() -> ArgumentParser:
    p = ArgumentParser(description="Write an ImageNet-like JPEG tree (root/<class>/<file>.JPEG, photo "
                                   "sizes around 500x375, ~100 KB files) for input-pipeline measurements.")
    p.add_argument("root", help="folder to write (must be missing, empty or an earlier generated tree)")
    _gen_args(p)
    return p


@command
def generate_main(argv=None) -> int:
    args = generate_parser().parse_args(argv)
    try:
        st = write_fake_imagenet(args.root, args.classes, args.per_class, args.seed)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{st['images']} JPEGs ({st['bytes'] / max(st['images'], 1) / 1024:.0f} KB mean) in {st['root']}")
    return 0


def bench_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Images/s through the full training transform for the project's reader (Pillow decode in the "
                    "source, the default; and its decode='cpp' option) and MindSpore's ImageFolderDataset + C++ "
                    "Decode, alternating, per worker count; ratios are taken within each repeat.")
    p.add_argument("--data", required=True, help="an ImageFolder tree; generated there first with --generate")
    p.add_argument("--generate", action="store_true", help="write the generated ImageNet-like tree into --data")
    _gen_args(p)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per cell (default 3)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--max_batches", type=int, default=0, help="timed batches per run (0 = the rest of one epoch)")
    p.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    p.add_argument("--out", default="outputs/pipeline", help="folder for pipeline.json / pipeline.md")
    return p


@command
def bench_main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    args = bench_parser().parse_args(argv)
    if min(args.workers) < 1 or args.repeats < 1 or args.batch_size < 1:
        print("error: --workers, --repeats and --batch_size must be >= 1", file=sys.stderr)
        return 2
    import mindspore as ms

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if max(args.workers) > cpus:
        print(f"error: MindSpore allows at most {cpus} workers per op on this machine ({cpus} CPUs); "
              f"got --workers {' '.join(map(str, args.workers))}", file=sys.stderr)
        return 2
    try:
        if args.generate:
            write_fake_imagenet(args.data, args.classes, args.per_class, args.seed)
        elif not os.path.isdir(args.data):
            print(f"error: {args.data} does not exist (add --generate to write a generated tree there)",
                  file=sys.stderr)
            return 2
        result = run_pipeline_bench(args.data, args.workers, args.repeats, args.batch_size, args.image_size,
                                    max_batches=args.max_batches, pipelines=args.pipelines)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = size = 0
    for dirpath, _, files in os.walk(args.data):
        for f in files:
            if not f.startswith("."):
                n += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    env = {"images": n, "mean_kb": size / max(n, 1) / 1024, "image_size": args.image_size,
           "batch_size": args.batch_size, "repeats": args.repeats, "mindspore": ms.__version__,
           "cpu_count": cpus,
           "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    paths = write_pipeline_reports(result, env, args.out)
    print(open(paths["md"]).read())
    print("reports: " + ", ".join(paths.values()))
    return 0
