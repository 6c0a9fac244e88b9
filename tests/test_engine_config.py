"""Config loading, CLI overrides, validation errors (no training)."""
import pytest
import yaml

from convattn.engine.config import ConfigError, SCHEMA, dump_config, load_config, parse_cli, validate


def _cfg(**kw):
    base = {"dataset": "digits", "num_classes": 10, "model": "van_b0"}
    base.update(kw)
    return base


def test_cli_overrides_and_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# model\nmodel: van_b0\nlr: 0.1\n# dataset\ndataset: digits\nnum_classes: 10\n")
    cfg = validate(parse_cli(["-c", str(path), "--lr", "0.01", "--model", "van_b1", "--amp_level", "O2",
                              "--model_kwargs", "{depths: [1, 1, 1, 1]}", "--ema", "true"], "t"))
    assert cfg.lr == 0.01 and cfg.model == "van_b1" and cfg.amp_level == "O2" and cfg.ema is True
    assert cfg.model_kwargs == {"depths": [1, 1, 1, 1]}
    assert cfg.batch_size == SCHEMA["batch_size"][0]  # untouched default
    flags = validate(parse_cli(["-c", str(path), "--deploy", "--ema", "--lr", "0.02"], "t"))
    assert flags.deploy is True and flags.ema is True and flags.lr == 0.02  # bare boolean flags mean true
    with pytest.raises(ConfigError, match="--lr needs a value"):
        parse_cli(["--lr"], "t")


@pytest.mark.parametrize("argv, needle", [
    (["--lrr", "0.1"], "Did you mean: lr"),
    (["--batchsize", "4"], "batch_size"),
    (["--wieght_decay", "0.1"], "weight_decay"),
])
def test_unknown_cli_key_suggests(argv, needle):
    with pytest.raises(ConfigError, match="unknown config key") as err:
        parse_cli(argv, "t")
    assert needle in str(err.value)


def test_unknown_yaml_key_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'epoch'.*epochs"):
        load_config(str(path))


def test_nested_yaml_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="flat"):
        load_config(str(path))


@pytest.mark.parametrize("bad, needle", [
    ({"lr": -0.01}, "'lr' must be > 0"),
    ({"batch_size": 0}, "'batch_size' must be > 0"),
    ({"batch_size": 2.5}, "'batch_size' must be int"),
    ({"epochs": "ten"}, "'epochs' must be int"),
    ({"amp_level": "O5"}, "'amp_level' must be one of"),
    ({"label_smoothing": 1.5}, "'label_smoothing' must be in \\[0, 1\\]"),
    ({"label_smoothing_mode": "sideways"}, "label_smoothing_mode"),
    ({"model": "van_b9"}, "Did you mean"),
    ({"warmup_epochs": 20, "epochs": 10}, "warmup_epochs"),
    ({"auto_augment": "rand-mX"}, "auto_augment"),
    ({"crop_pct": 1.2}, "crop_pct"),
    ({"amp_level": "O2", "amp_dtype": "bfloat16"}, "bfloat16 has no CPU kernels"),
    ({"dataset": "digits", "num_classes": 1000}, "num_classes: 10"),
])
def test_invalid_values(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(_cfg(**bad))


def test_model_is_required_and_model_kwargs_are_checked():
    with pytest.raises(ConfigError, match="config key 'model' is required.*--model NAME"):
        validate({"dataset": "digits", "num_classes": 10})
    with pytest.raises(ConfigError, match=r"van_b0 does not accept 'depth' \(did you mean 'depths'\?\).*embed_dims"):
        validate(_cfg(model_kwargs={"depth": [1, 1, 1, 1]}))
    with pytest.raises(ConfigError, match="'model_kwargs' sets 'num_classes'.*'num_classes: ...' instead"):
        validate(_cfg(model_kwargs={"num_classes": 10}))
    with pytest.raises(ConfigError, match="'model_kwargs' sets 'drop_path_rate'"):
        validate(_cfg(model="deit_tiny", model_kwargs={"drop_path_rate": 0.1}))
    with pytest.raises(ConfigError, match="san10_pairwise does not accept 'embed_dims'"):
        validate(_cfg(model="san10_pairwise", model_kwargs={"embed_dims": [8]}))
    assert validate(_cfg(model="san10_pairwise", model_kwargs={"layers": [1, 1, 1, 1, 1]})).model == "san10_pairwise"


def test_missing_paths(tmp_path):
    with pytest.raises(ConfigError, match="'data_dir' is required"):
        validate({"dataset": "imagefolder", "model": "van_b0"})
    with pytest.raises(ConfigError, match=r"train does not exist"):
        validate({"dataset": "imagefolder", "data_dir": str(tmp_path), "model": "van_b0"})
    with pytest.raises(ConfigError, match="resume"):
        validate(_cfg(resume=str(tmp_path / "nope.ckpt")))
    with pytest.raises(ConfigError, match="pretrained"):
        validate(_cfg(pretrained=str(tmp_path / "nope.ckpt")))
    with pytest.raises(ConfigError, match="config file .* does not exist"):
        parse_cli(["-c", str(tmp_path / "missing.yaml")], "t")


def test_effective_config_roundtrip(tmp_path):
    cfg = validate(_cfg(lr=0.02, model_kwargs={"depths": [1, 1, 1, 1]}, mean=[0.5, 0.5, 0.5]))
    path = tmp_path / "config.yaml"
    dump_config(cfg, str(path))
    text = path.read_text()
    assert "# optimizer" in text and "# checkpoint" in text
    again = validate(yaml.safe_load(text))
    assert again == cfg


def test_shipped_configs_validate():
    import glob
    import os
    from conftest import REPO
    # the recipes: configs/<family>/*.yaml (configs/memory_slopes.yaml is the recipe-memory table's data)
    files = sorted(glob.glob(str(REPO / "configs" / "*" / "*.yaml")))
    assert len(files) >= 9
    for f in files:
        raw = load_config(f)
        if raw.get("dataset", "imagefolder") == "imagefolder":
            raw["data_dir"] = None
            with pytest.raises(ConfigError, match="data_dir"):
                validate(raw)
        else:
            cfg = validate(raw)
            assert cfg.num_classes == 10
        assert os.path.basename(f).count("_") >= 2
