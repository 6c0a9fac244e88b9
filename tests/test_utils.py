"""Small shared helpers: README block replacement and the --model_kwargs parser."""
import pytest

from convattn.utils.cli import parse_model_kwargs
from convattn.utils.readme import replace_marked_block


def test_replace_marked_block(tmp_path):
    p = tmp_path / "README.md"
    p.write_text("head\n<!-- t:begin -->\nold\n<!-- t:end -->\ntail\n")
    replace_marked_block(str(p), "t", "new table")
    assert p.read_text() == "head\n<!-- t:begin -->\nnew table\n<!-- t:end -->\ntail\n"
    with pytest.raises(ValueError, match="no '<!-- other:begin -->'"):
        replace_marked_block(str(p), "other", "x")
    assert p.read_text().count("new table") == 1


def test_parse_model_kwargs():
    """One syntax everywhere: a YAML flow mapping; JSON objects (valid YAML) keep working."""
    assert parse_model_kwargs('{"depths": [1, 1, 1, 1]}') == {"depths": [1, 1, 1, 1]}
    assert parse_model_kwargs("{depths: [1, 1, 1, 1], num_classes: 10}") == {"depths": [1, 1, 1, 1], "num_classes": 10}
    assert parse_model_kwargs("") == {} and parse_model_kwargs(None) == {}
    for bad, why in (("[1, 2]", "list, not a mapping"), ("{depths: [1, 2}", "does not parse"),
                     ("7", "int, not a mapping")):
        with pytest.raises(ValueError, match=r"--model_kwargs must be a mapping written in YAML flow style or as a "
                                             r"JSON object, e\.g\. .*" + why):
            parse_model_kwargs(bad)


def test_atomic_directory_replaces_whole_or_leaves_old(tmp_path):
    """The tree writers (digits, generated ImageNet) fill a sibling folder and swap it in: an error mid-write leaves
    the old folder and no temporary one; success replaces the old folder entirely."""
    import pytest as _pytest
    from convattn.utils.fsio import atomic_directory

    root = tmp_path / "tree"
    root.mkdir()
    (root / "old.txt").write_text("old")
    with _pytest.raises(RuntimeError):
        with atomic_directory(root) as tmp:
            (tmp_path / tmp / "half.txt").write_text("half")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"] and (root / "old.txt").read_text() == "old"
    with atomic_directory(root) as tmp:
        (tmp_path / tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"] and sorted(p.name for p in root.iterdir()) == ["new.txt"]
