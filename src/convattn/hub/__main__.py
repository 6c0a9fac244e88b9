"""``python -m convattn.hub``: the official weights of every model, and fetching them ahead of time.

    python -m convattn.hub list [--readme docs/convert.md]    the weights table (and rewrite its block in that page)
    python -m convattn.hub fetch van_b0 swin_tiny             download, verify and convert into $CONVATTN_HOME now
                                                              (then copy the folder to an offline machine)
"""
import sys

from ..utils.cli import ArgumentParser
from ..utils.errors import command

__all__ = ["main", "weights_table"]


def weights_table() -> str:
    """Markdown: one row per model with released official weights (file, where, hash check, top-1, container),
    then the never-released ones in one line."""
    from ..models import list_models
    from ..models.registry import format_top1, weights_entry

    lines = ["| model | file | from (in order) | checked by | official top-1 | container | licence |",
             "|---|---|---|---|---:|---|---|"]
    never = []
    for name in list_models():
        w = weights_entry(name)
        if w["status"] == "unreleased":
            never.append(name)
            continue
        if w["status"] == "manual":
            file, where = "(by hand)", f"manual: {w['manual']}"
        else:
            file, where = f"`{w['file']}`", "<br>".join(w["urls"])
        check = (f"sha256 `{w['sha256'][:12]}…`" if w.get("sha256") else
                 f"sha256 prefix `{w['sha256_prefix']}`" if w.get("sha256_prefix") else "no published hash")
        lines.append(f"| `{name}` | {file} | {where} | {check} | {format_top1(w['top1'])} | {w['container']} "
                     f"| {w['licence']} |")
    lines.append("")
    lines.append("Never released (`pretrained=True` refuses them, saying why): "
                 + ", ".join(f"`{n}`" for n in never) + ".")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description="Official pretrained weights: list them, or fetch them into $CONVATTN_HOME ahead "
                                   "of time (download, verify, convert).")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the weights table")
    ls.add_argument("--readme", help="also replace the block between <!-- weights-table:begin/end --> in this file")
    fetch = sub.add_parser("fetch", help="download, verify and convert the official weights of these models")
    fetch.add_argument("models", nargs="+")
    return p


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        table = weights_table()
        print(table)
        if args.readme:
            from ..utils.readme import replace_marked_block

            replace_marked_block(args.readme, "weights-table", table)
        return 0
    from .._env import apply_cpu_defaults
    from ..models.helpers import WeightsError
    from .pretrained import official_checkpoint

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    status = 0
    for name in args.models:
        try:
            path, source = official_checkpoint(name)
        except (WeightsError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path} (from {source['file']}, sha256 {source['sha256']})")
    return status


if __name__ == "__main__":
    sys.exit(main())
