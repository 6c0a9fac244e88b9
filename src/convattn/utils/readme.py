"""Replace a generated block in a markdown file between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``.

``DOC_BLOCKS`` says which page (relative to the repository root) holds each generated block; the generators take the
page with ``--readme PATH`` and ``tests/test_docs.py`` checks that every block sits in its page and nowhere else.
"""
import os

__all__ = ["DOC_BLOCKS", "replace_marked_block"]

DOC_BLOCKS = {
    "model-table": "configs/README.md",          # scripts/model_table.py
    "recipe-memory": "configs/README.md",        # scripts/recipe_memory.py --write
    "parity-table": "docs/convert.md",           # scripts/parity_table.py
    "weights-table": "docs/convert.md",          # python -m convattn.hub list
    "target-table": "docs/ascend.md",            # scripts/target_table.py
    "target-check": "docs/ascend.md",            # scripts/target_table.py --check
    "ascend-o2-digits": "docs/ascend.md",        # pytest -s tests/test_ascend.py -k representative (printed rows)
    "ascend-audit": "docs/ascend.md",            # scripts/ascend_audit.py
    "export-table": "export/README.md",          # scripts/export_table.py
    "export-table-full": "export/README.md",     # scripts/export_table.py --full
    "bench-table": "scripts/README.md",          # scripts/benchmark.py (its markdown report)
}


def replace_marked_block(path: str, marker: str, text: str) -> None:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        home = DOC_BLOCKS.get(marker)
        hint = (f"; the {marker} block lives in {home} (relative to the repository root): pass that file"
                if home else "; add them where the block belongs")
        raise ValueError(f"{path} has no '{begin}' ... '{end}' markers{hint}")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(head + begin + "\n" + text.rstrip("\n") + "\n" + end + tail)
    os.replace(tmp, path)
