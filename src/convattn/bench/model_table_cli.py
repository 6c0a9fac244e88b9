"""Command line of ``scripts/model_table.py``: print the model table of configs/README.md (params, GMACs counted from
the networks, paper top-1, upstream source).

Usage: python scripts/model_table.py [PATTERN ...]     e.g.  python scripts/model_table.py 'van_*'
       python scripts/model_table.py --readme configs/README.md   # rewrite the generated block there
"""
import sys

from ..models import list_models
from ..utils.cli import ArgumentParser
from ..utils.readme import replace_marked_block
from .model_table import markdown_table, model_rows
from ..utils.errors import command

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description="Print the model table of configs/README.md (params, GMACs counted from the networks, "
                                   "paper top-1, upstream source).")
    p.add_argument("patterns", nargs="*", default=["*"], help="shell-style name patterns (default: every model)")
    p.add_argument("--readme", help="also replace the block between <!-- model-table:begin/end --> in this file")
    return p


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = sorted({n for pat in args.patterns for n in list_models(pat)})
    if not names:
        print(f"error: no registered model matches {args.patterns}; see convattn.list_models()", file=sys.stderr)
        return 2
    table = markdown_table(model_rows(names))
    print(table)
    if args.readme:
        replace_marked_block(args.readme, "model-table", table)
    return 0

