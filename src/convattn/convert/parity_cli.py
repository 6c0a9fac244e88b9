"""Command line of ``scripts/parity_table.py``: print the parity table of docs/convert.md (every official-code fixture vs the
port, in GRAPH and PYNATIVE mode).

Usage: python scripts/parity_table.py [--readme docs/convert.md] [FIXTURE ...]   (fixtures: shared/reference beside the clone, or set
CONVATTN_REFERENCE_DIR). Exits 1 if any comparison is outside its tolerance.
"""
import sys

from ..utils.cli import ArgumentParser
from ..utils.readme import replace_marked_block
from .parity import markdown_table, parity_rows
from ..utils.errors import command

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description="Print the parity table of docs/convert.md: every official-code fixture vs the port, "
                                   "in GRAPH and PYNATIVE mode.")
    p.add_argument("fixtures", nargs="*", help="fixture names (default: all), e.g. van_b0 san_sam_pairwise_k3")
    p.add_argument("--readme", help="also replace the block between <!-- parity-table:begin/end --> in this file")
    return p


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    args = build_parser().parse_args(argv)
    try:
        rows = parity_rows(only=args.fixtures or None, log=lambda m: print(m, file=sys.stderr, flush=True))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no fixture matches {args.fixtures}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    print(table)
    if args.readme:
        if args.fixtures:
            print("error: --readme needs the full table (drop the fixture names)", file=sys.stderr)
            return 2
        replace_marked_block(args.readme, "parity-table", table)
    return 0 if all(r["ok"] for r in rows) else 1

