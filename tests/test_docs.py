"""The documentation: a short README, links that resolve, generated blocks in their pages, no outside references."""
import re

import pytest

from conftest import REPO
from convattn.utils.readme import DOC_BLOCKS, replace_marked_block

README_MAX_BYTES = 15 * 1024
DOCS = sorted({REPO / "README.md", *REPO.glob("configs/**/*.md"), *REPO.glob("docs/**/*.md"),
               *REPO.glob("export/**/*.md"), *REPO.glob("scripts/**/*.md")})
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ISSUE = re.compile(r"\bissues?\s+#?\d+", re.I)


def _rel(path):
    return path.relative_to(REPO).as_posix()


def _anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    text = (REPO / "README.md").read_text()
    size = len(text.encode())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (limit {README_MAX_BYTES}): move detail to a linked page")
    assert ("pip install -r requirements.txt && pip install -e . && python scripts/train.py -c "
            "configs/quickstart/van_b0_digits_cpu.yaml") in text
    assert "pip install -r requirements.txt && python -m pytest -q" in text


def test_every_relative_link_resolves_inside_the_repository():
    assert len(DOCS) > 10, [_rel(d) for d in DOCS]
    bad = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if not dest.is_relative_to(REPO.resolve()) or not dest.exists():
                bad.append(f"{_rel(doc)}: {target} (no such file in the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{_rel(doc)}: {target} (no heading '#{anchor}' in {_rel(dest)})")
    assert not bad, "\n".join(bad)


def test_no_issue_numbers_or_paths_outside_the_repository():
    bad = []
    for doc in DOCS + sorted(REPO.glob("configs/**/*.yaml")):
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if ISSUE.search(line) or "../shared" in line:
                bad.append(f"{_rel(doc)}:{n}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("marker", sorted(DOC_BLOCKS))
def test_generated_block_lives_in_its_page_only(marker):
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    home = REPO / DOC_BLOCKS[marker]
    text = home.read_text()
    assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end), (
        f"{DOC_BLOCKS[marker]} must hold the {marker} block once")
    others = [_rel(d) for d in DOCS if d != home and begin in d.read_text()]
    assert not others, f"{marker} block also in {others}"


def test_replacing_a_moved_block_names_its_page(tmp_path):
    old = tmp_path / "README.md"
    old.write_text("no blocks here\n")
    with pytest.raises(ValueError, match="model-table block lives in configs/README.md"):
        replace_marked_block(str(old), "model-table", "x")
    assert old.read_text() == "no blocks here\n"
