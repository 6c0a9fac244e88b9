"""The quickstart digits tree is the same whichever quickstart runs first (the recipes' results depend on it)."""
from convattn.engine.config import validate
from convattn.engine.trainer import prepare_data_dir


def test_digits_tree_is_32px_whatever_the_recipe_size(tmp_path, capsys, monkeypatch):
    import convattn.data as data

    written = []
    monkeypatch.setattr(data, "write_digits_imagefolder",
                        lambda root, size=32, *a, **k: written.append(size) or {"train": 1438, "val": 359})
    cfg = validate({"dataset": "digits", "num_classes": 10, "model": "acmix_resnet26", "image_size": 64,
                    "data_dir": str(tmp_path / "digits")})
    prepare_data_dir(cfg)  # a 64x64 recipe run first must not write a 64x64 tree (the 32x32 recipes would read it)
    assert written == [32]
    assert "(32x32 RGB PNG)" in capsys.readouterr().out


def test_tree_of_another_size_is_used_with_a_warning(tmp_path, capsys):
    from convattn.data.digits import _MARKER

    root = tmp_path / "digits16"
    root.mkdir()
    (root / _MARKER).write_text("size=16 val_fraction=0.2 seed=0\n")  # as prepare_digits.py --size 16 leaves it
    prepare_data_dir(validate({"dataset": "digits", "num_classes": 10, "model": "van_b0", "data_dir": str(root)}))
    out = capsys.readouterr().out
    assert "holds the digits at 16x16" in out and "--overwrite" in out
