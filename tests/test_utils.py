"""Small shared helpers: README block replacement and the --model-kwargs parser."""
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
    assert parse_model_kwargs('{"depths": [1, 1, 1, 1]}') == {"depths": [1, 1, 1, 1]}
    for bad in ("[1, 2]", "{depths: 1}"):
        with pytest.raises(ValueError, match="must be a JSON object"):
            parse_model_kwargs(bad)
