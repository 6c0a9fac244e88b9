"""Command line of ``scripts/recipe_memory.py``: the projected device memory of every Ascend recipe.

Usage: python scripts/recipe_memory.py                      # print the table
       python scripts/recipe_memory.py --measure swin_tiny    # re-measure models (or: all), update the slope file
       python scripts/recipe_memory.py --write                # regenerate the table in configs/README.md
       python scripts/recipe_memory.py --check                # exit 1 if that table is stale or a recipe is over
"""
import sys

from ..layers.targets import resolve_target
from ..utils.cli import ArgumentParser, argument_type
from ..utils.errors import command
from ..utils.readme import replace_marked_block
from .recipe_memory import LIMIT_GB, MARKER, check, default_paths, measure, render

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    paths = default_paths()
    p = ArgumentParser(description=f"Projected device memory of every Ascend recipe (configs/*/*_ascend.yaml) from "
                                   f"the measured per-image training memory of its model; limit {LIMIT_GB:g} GB.")
    p.add_argument("--measure", nargs="+", metavar="MODEL",
                   help="measure these models' slopes (Ascend formulation, on CPU; 'all': every model an Ascend "
                        "recipe trains) and write them into the slope file; about 2-4 minutes per model on 2 cores")
    p.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "float16"],
                   help="with --measure: which precisions to measure (default float32; float16 = AMP O2, the recipes' "
                        "level: worth measuring on a device only, on CPU its peak is far above float32's)")
    p.add_argument("--device_target", default="CPU", type=argument_type(resolve_target, "device_target"),
                   help="with --measure: where to run (default CPU: peak process RSS; Ascend/GPU: the allocator's "
                        "peak); the networks are built in their Ascend formulation either way")
    p.add_argument("--timeout", type=int, default=1800, help="with --measure: seconds per model and batch")
    p.add_argument("--write", action="store_true", help=f"regenerate the <!-- {MARKER} --> block of --readme")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a recipe has no slope, projects over the limit, contradicts its stated global "
                        "batch, or the README's table differs from the one generated now")
    p.add_argument("--configs", default=paths["configs"], help="recipe folder (default: this checkout's configs/)")
    p.add_argument("--slopes", default=paths["slopes"], help="slope file (default: configs/memory_slopes.yaml)")
    p.add_argument("--readme", default=paths["readme"], help="page holding the table (default: configs/README.md)")
    return p


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.measure:
        from .. import apply_cpu_defaults

        apply_cpu_defaults()
        measure(args.measure, args.configs, args.slopes, precisions=tuple(args.precisions), timeout=args.timeout,
                device_target=args.device_target)
    table = render(args.configs, args.slopes)
    print(table)
    if args.write:
        replace_marked_block(args.readme, MARKER, table)
        print(f"wrote the {MARKER} table into {args.readme}")
    if args.check:
        problems = check(args.configs, args.slopes, args.readme)
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        if problems:
            return 1
        print(f"ok: every Ascend recipe projects <= {LIMIT_GB:g} GB and the table is current")
    return 0
