"""Replace a generated block in a markdown file between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``."""

__all__ = ["replace_marked_block"]


def replace_marked_block(path: str, marker: str, text: str) -> None:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        raise ValueError(f"{path} has no '{begin}' ... '{end}' markers; add them where the block belongs")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(head + begin + "\n" + text.rstrip("\n") + "\n" + end + tail)
    import os

    os.replace(tmp, path)
