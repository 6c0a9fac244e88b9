#!/usr/bin/env python
"""Print the README's model table (params, GMACs counted from the networks, paper top-1, upstream source).

Usage: python scripts/model_table.py [PATTERN ...]     e.g.  python scripts/model_table.py 'van_*'
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from convattn.utils.cli import ArgumentParser  # noqa: E402

import convattn  # noqa: E402  (CPU speed default before MindSpore runs)
from convattn.bench.model_table import markdown_table, model_rows  # noqa: E402
from convattn.utils.readme import replace_marked_block  # noqa: E402


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("patterns", nargs="*", default=["*"], help="shell-style name patterns (default: every model)")
    p.add_argument("--readme", help="also replace the block between <!-- model-table:begin/end --> in this file")
    args = p.parse_args(argv)
    names = sorted({n for pat in args.patterns for n in convattn.list_models(pat)})
    if not names:
        print(f"error: no registered model matches {args.patterns}; see convattn.list_models()", file=sys.stderr)
        return 2
    table = markdown_table(model_rows(names))
    print(table)
    if args.readme:
        replace_marked_block(args.readme, "model-table", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
