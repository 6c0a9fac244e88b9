"""`python -m convattn.convert`: genuine official-format checkpoints -> .ckpt -> create_model(pretrained=...)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import mindspore as ms

import convattn
from conftest import REPO, require_reference
from convattn.convert import ConversionError, load_official_state, map_state_dict
from convattn.convert.converter import convert_checkpoint, read_official_state
from convattn.convert.rules import get_rules
from parity import tolerance

B0_KW = {}


def _run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "convattn.convert", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=600)


def test_van_b0_official_checkpoint_converts_and_matches(tmp_path):
    """The official-format (torch.save zip, {'epoch','state_dict'}) van_b0 checkpoint -> .ckpt -> same outputs."""
    from pth_writer import Tensor, save  # test utility: writes torch.save's zip layout without torch

    fixture = require_reference("van_b0.npz")
    with np.load(fixture) as f:
        inp, ref = f["input"], f["output"]
    state = read_official_state(str(fixture))
    src = tmp_path / "van_tiny_754.pth.tar"
    save({"epoch": 300, "state_dict": {f"module.{k}": Tensor.from_array(v) for k, v in state.items()}}, str(src))
    dst = tmp_path / "van_b0.ckpt"
    proc = _run_cli("--model", "van_b0", str(src), str(dst))
    assert proc.returncode == 0, proc.stderr
    assert len((proc.stdout + proc.stderr).splitlines()) <= 30, proc.stdout + proc.stderr  # no warning per tensor
    assert dst.exists()
    ms.set_context(mode=ms.GRAPH_MODE)
    net = convattn.create_model("van_b0", pretrained=str(dst))
    net.set_train(False)
    got = net(ms.Tensor(inp)).asnumpy()
    assert float(np.abs(got - ref).max()) <= tolerance(ref)


def test_genuine_torch_file_loads_through_converter():
    """`van_block_state_dict.pth` was written by torch.save itself; its tensors equal the fixture's."""
    pth = require_reference("pth/van_block_state_dict.pth")
    a = read_official_state(str(pth))
    b = read_official_state(str(require_reference("van_block.npz")))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_wrong_variant_is_refused_and_nothing_written(tmp_path):
    fixture = require_reference("van_b0.npz")
    dst = tmp_path / "out.ckpt"
    proc = _run_cli("--model", "van_b1", str(fixture), str(dst))
    assert proc.returncode == 1
    assert "does not fit van_b1" in proc.stderr and "shape mismatch" in proc.stderr and "nothing was written" in proc.stderr
    assert not dst.exists() and not any(tmp_path.iterdir())


def test_existing_destination_is_not_overwritten(tmp_path):
    fixture = require_reference("van_b0.npz")
    dst = tmp_path / "out.ckpt"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_checkpoint(str(fixture), str(dst), "van_b0")
    assert dst.read_bytes() == b"keep me"


def test_bad_model_kwargs_json(tmp_path):
    proc = _run_cli("--model", "van_b0", "--model_kwargs", "[1, 2]", "a.pth", str(tmp_path / "b.ckpt"))
    assert proc.returncode == 2 and "JSON object" in proc.stderr


def test_mapping_reports_missing_unexpected_and_shapes():
    target = {"a.weight": (4, 3), "bn.gamma": (4,), "bn.beta": (4,), "bn.moving_mean": (4,), "bn.moving_variance": (4,)}
    state = {"a.weight": np.zeros((4, 2)), "bn.weight": np.ones(4), "bn.running_mean": np.zeros(4),
             "bn.running_var": np.ones(4), "bn.num_batches_tracked": np.array(3), "extra.bias": np.zeros(2)}
    kept, rep, dropped = map_state_dict(state, target, get_rules(None))
    assert rep.missing == ["bn.beta"] and rep.unexpected == ["extra.bias"]
    assert rep.mismatched == [("a.weight", (4, 2), (4, 3))]
    assert dropped == ["bn.num_batches_tracked"]
    assert set(kept) == {"bn.gamma", "bn.moving_mean", "bn.moving_variance"}


def test_partial_state_is_refused_before_loading():
    from convattn.layers import LKA

    net = LKA(8)
    before = net.conv0.weight.asnumpy().copy()
    with pytest.raises(ConversionError, match="missing from the checkpoint"):
        load_official_state(net, {"conv0.weight": np.zeros((8, 1, 5, 5), np.float32)}, rules="van")
    np.testing.assert_array_equal(net.conv0.weight.asnumpy(), before)


def test_num_classes_in_model_kwargs(tmp_path, capsys):
    """Any create_model argument may come in --model_kwargs, num_classes included; a clash names --num_classes."""
    from convattn.convert.__main__ import main

    fixture = require_reference("van_b0.npz")
    dst = tmp_path / "b0_10.ckpt"
    assert main(["--model", "van_b0", "--model_kwargs", '{"num_classes": 10}', str(fixture), str(dst)]) == 0
    info = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    assert info["num_classes"] == 10 and info["model_kwargs"] == {}
    assert ms.load_checkpoint(str(dst))["head.weight"].shape == (10, 256)
    other = tmp_path / "clash.ckpt"
    assert main(["--model", "van_b0", "--num_classes", "7", "--model_kwargs", '{"num_classes": 10}', str(fixture),
                 str(other)]) == 1
    err = capsys.readouterr().err
    assert "disagree" in err and "--num_classes" in err and not other.exists()
