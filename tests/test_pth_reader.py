"""Tests for convattn.convert.pth_reader: reading torch.save files without PyTorch.

Genuine files: the four written by torch 2.13 in ../shared/reference/pth/, plus two small ones
written by torch 2.13 and kept here (tests/data/pth/: legacy_small.pth in the pre-1.6 legacy
format, zip_mixed.pth with uint16/complex/views/numpy/foreign objects), each with an .npz of the
expected arrays.  Everything else is written by tests/pth_writer.py, which needs no torch.
"""
import argparse
import io
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pth_writer as pw  # noqa: E402
from conftest import require_reference  # noqa: E402

from convattn.convert.pth_reader import (  # noqa: E402
    CheckpointFormatError, UnsafeCheckpointError, extract_state_dict, load_pth, read_state_dict)

DATA = Path(__file__).resolve().parent / "data" / "pth"
GENUINE = [  # (file in pth/, fixture npz, container key, stripped prefix, other top-level keys)
    ("van_lka.pth", "van_lka.npz", None, None, []),
    ("van_block_state_dict.pth", "van_block.npz", "state_dict", None, ["epoch"]),
    ("san_sam_pairwise_k3_module.pth", "san_sam_pairwise_k3.npz", "state_dict", "module.",
     ["epoch", "best_acc1"]),
    ("acmix_swin_block_shift_model.pth", "acmix_swin_block_shift.npz", "model", None,
     ["epoch", "max_accuracy"]),
]


def expected_state(npz_path):
    with np.load(npz_path) as data:
        return OrderedDict((k[len("state/"):], data[k]) for k in data.files if k.startswith("state/"))


def assert_same(state, expected):
    assert list(state) == list(expected)
    for key, want in expected.items():
        got = state[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype and got.shape == want.shape, (key, got.dtype, got.shape)
        assert got.tobytes() == want.tobytes(), key  # bit for bit
        assert got.flags.c_contiguous and got.flags.owndata, key


# ------------------------------------------------------------------ genuine torch files
@pytest.mark.parametrize("name,fixture,container,prefix,other", GENUINE, ids=[g[0] for g in GENUINE])
def test_genuine_torch_checkpoints(name, fixture, container, prefix, other):
    path = require_reference(f"pth/{name}")
    state, info = read_state_dict(path)
    assert_same(state, expected_state(require_reference(fixture)))
    assert info == {"format": "zip", "container_key": container, "stripped_prefix": prefix,
                    "ignored_objects": [], "other_keys": other}


def test_genuine_int64_buffer_and_raw_structure():
    state, _ = read_state_dict(require_reference("pth/acmix_swin_block_shift_model.pth"))
    assert state["attn.relative_position_index"].dtype == np.int64
    assert state["attn_mask"].dtype == np.float32
    raw = load_pth(require_reference("pth/san_sam_pairwise_k3_module.pth"))
    assert list(raw) == ["epoch", "state_dict", "best_acc1"]
    assert all(k.startswith("module.") for k in raw["state_dict"])
    sd = extract_state_dict(raw)
    assert list(sd) == [k[len("module."):] for k in raw["state_dict"]]


def test_truncated_genuine_file(tmp_path):
    data = require_reference("pth/van_block_state_dict.pth").read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointFormatError, match="is truncated") as err:
            load_pth(path)
        assert str(path) in str(err.value) and "re-download" in str(err.value)


def test_legacy_file_written_by_torch():
    state, info = read_state_dict(DATA / "legacy_small.pth")
    assert_same(state, expected_state(DATA / "legacy_small.npz"))
    assert info == {"format": "legacy", "container_key": "state_dict", "stripped_prefix": None,
                    "ignored_objects": [], "other_keys": ["epoch", "arch"]}
    assert state["bf16"].dtype == np.float32 and state["bn.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(state["view"], state["base"][1:, ::2])  # shared storage + offset


def test_legacy_file_truncated_anywhere(tmp_path):
    data = (DATA / "legacy_small.pth").read_bytes()
    for cut in (5, 60, 400, len(data) // 2, len(data) - 1):
        path = tmp_path / "cut.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointFormatError, match=str(path).replace("\\", "\\\\")):
            load_pth(path)


def test_zip_file_written_by_torch_with_extras():
    state, info = read_state_dict(DATA / "zip_mixed.pth")
    assert_same(state, expected_state(DATA / "zip_mixed.npz"))
    assert info["stripped_prefix"] == "module." and info["container_key"] == "model"
    assert info["ignored_objects"] == ["args: argparse.Namespace"]
    assert state["u16"].dtype == np.uint16 and state["c64"].dtype == np.complex64
    np.testing.assert_array_equal(state["transposed"], state["conv.weight"].transpose(3, 1, 0, 2))
    np.testing.assert_array_equal(state["tagged"], [0, 1, 2])  # via _rebuild_from_type_v2
    np.testing.assert_array_equal(state["param_state"], [1, 1])  # _rebuild_parameter_with_state
    obj = load_pth(DATA / "zip_mixed.pth")
    assert type(obj["best"]) is np.float64 and obj["best"] == 0.625
    assert obj["np_array"].dtype == np.dtype(">i2")
    np.testing.assert_array_equal(obj["np_array"], [[0, 1], [2, 3]])
    assert (obj["dtype"], obj["device"], obj["size"]) == ("torch.float16", "cuda:1", (2, 3))
    assert obj["misc"] == [1, (2.5, "x"), {"s": {3}}, b"raw", bytearray(b"ba")]
    assert obj["args"].state == {"lr": 0.1, "arch": "tiny"}  # recorded, never imported


# ----------------------------------------------------------- round trips via pth_writer
DTYPE_CASES = {
    "float32": np.array([[1.5, -2.25], [np.inf, 3e38]], np.float32),
    "float64": np.array([1e-300, -0.0, np.pi]),
    "float16": np.array([65504, -1e-4, 0.5], np.float16),
    "int64": np.array([-(2 ** 63), 2 ** 63 - 1, 0], np.int64),
    "int32": np.array([-(2 ** 31), 7], np.int32),
    "int16": np.array([-300, 300], np.int16),
    "int8": np.array([-128, 127], np.int8),
    "uint8": np.array([0, 255], np.uint8),
    "bool": np.array([[True], [False]]),
    "complex64": np.array([1 + 2j, -3j], np.complex64),
}


@pytest.mark.parametrize("layout", ["zip", "legacy", "zip-big-endian"])
def test_round_trip_dtypes(tmp_path, layout):
    bf16 = np.array([1.0, -2.5, 3.140625, 1.0e-3, -65280.0], np.float32)
    state = OrderedDict((k, v) for k, v in DTYPE_CASES.items())
    state["bf16"] = pw.Tensor.from_array(bf16, dtype="bfloat16")
    path = tmp_path / "dtypes.pth"
    pw.save(state, path, legacy=layout == "legacy",
            byteorder="big" if layout.endswith("big-endian") else "little")
    got, info = read_state_dict(path)
    assert info["format"] == ("legacy" if layout == "legacy" else "zip")
    assert_same(OrderedDict((k, got[k]) for k in DTYPE_CASES), DTYPE_CASES)
    truncated = (bf16.view(np.uint32) & 0xFFFF0000).view(np.float32)  # bf16 keeps the top 16 bits
    assert got["bf16"].dtype == np.float32 and got["bf16"].tobytes() == truncated.tobytes()
    assert all(a.dtype.isnative for a in got.values())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_offsets_strides_scalars_and_empty(tmp_path, legacy):
    base = pw.Storage(np.arange(30, dtype=np.float32))
    state = OrderedDict(
        full=pw.Tensor(base, 0, (5, 6), (6, 1)),
        window=pw.Tensor(base, 7, (2, 3), (6, 2)),          # offset + non-unit strides
        transposed=pw.Tensor(base, 3, (3, 2), (1, 6)),      # column-major view
        broadcast=pw.Tensor(base, 4, (2, 3), (0, 1)),       # expand(): stride 0
        scalar=pw.Tensor(base, 29, (), ()),                 # 0-d, last element
        empty=pw.Tensor(base, 30, (0, 4), (4, 1)),          # empty, offset at the end
        zero_d_int=np.array(17, np.int64),
        empty_int=np.zeros((3, 0), np.int32),
        param=pw.Parameter(np.eye(2)),
    )
    path = tmp_path / "views.pth"
    pw.save({"state_dict": state}, path, legacy=legacy)
    got, _ = read_state_dict(path)
    flat = np.arange(30, dtype=np.float32)

    def gather(offset, shape, stride):  # index arithmetic, independent of numpy stride tricks
        index = np.full(shape, offset)
        for axis, (n, s) in enumerate(zip(shape, stride)):
            index = index + (np.arange(n) * s).reshape([-1 if a == axis else 1 for a in range(len(shape))])
        return flat[index]

    for key in ("full", "window", "transposed", "broadcast", "scalar", "empty"):
        t = state[key]
        want = gather(t.offset, t.shape, t.stride)
        assert got[key].shape == want.shape and got[key].tobytes() == want.tobytes(), key
        assert got[key].flags.c_contiguous and got[key].flags.writeable
    assert got["scalar"].shape == () and got["scalar"] == 29
    assert got["zero_d_int"].dtype == np.int64 and got["zero_d_int"] == 17
    assert got["empty_int"].shape == (3, 0) and got["empty_int"].dtype == np.int32
    np.testing.assert_array_equal(got["param"], np.eye(2))
    got["full"][0, 0] = 99  # copies: views do not share memory
    assert got["transposed"][0, 0] == 3


def test_legacy_storage_view(tmp_path):
    root = pw.Storage(np.arange(10, dtype=np.int16))
    view = pw.StorageView(root, 4, 5)
    pw.save({"a": pw.Tensor(view, 1, (2, 2), (2, 1)), "b": pw.Tensor(root, 0, (10,), (1,))},
            tmp_path / "v.pth", legacy=True)
    got = load_pth(tmp_path / "v.pth")
    np.testing.assert_array_equal(got["a"], [[5, 6], [7, 8]])
    np.testing.assert_array_equal(got["b"], np.arange(10))


def test_nested_containers_and_prefix_rules(tmp_path):
    weights = OrderedDict([("module.a.weight", np.ones((2, 2), np.float32)),
                           ("module.a.bias", np.zeros(2, np.float32))])
    obj = {"epoch": 3, "state_dict": weights,
           "optimizer": {"state": {0: {"exp_avg": np.full(3, 0.5)}},
                         "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
           "history": [(1, 2.0), ("x", None)]}
    pw.save(obj, tmp_path / "n.pth")
    loaded = load_pth(tmp_path / "n.pth")
    assert isinstance(loaded["state_dict"], OrderedDict)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["exp_avg"], np.full(3, 0.5))
    assert loaded["optimizer"]["param_groups"] == [{"lr": 0.1, "params": [0, 1]}]
    assert loaded["history"] == [(1, 2.0), ("x", None)]
    state, info = read_state_dict(tmp_path / "n.pth")
    assert list(state) == ["a.weight", "a.bias"] and info["stripped_prefix"] == "module."
    assert info["other_keys"] == ["epoch", "optimizer", "history"]
    mixed = {"module.a": np.ones(1), "b": np.ones(1)}  # prefix not on every key: kept
    assert list(extract_state_dict(mixed)) == ["module.a", "b"]


def test_container_choice():
    sd = {"w": np.ones(2)}
    assert extract_state_dict({"model": {"x": np.ones(1)}, "state_dict": sd}) is not sd
    assert list(extract_state_dict({"model": {"x": np.ones(1)}, "state_dict": sd})) == ["w"]
    assert list(extract_state_dict({"module": sd, "epoch": 1})) == ["w"]
    assert list(extract_state_dict({"model": sd, "ema": {"w": 1}})) == ["w"]
    with pytest.raises(CheckpointFormatError, match=r"'epoch', 'lr'.*torch.save"):
        extract_state_dict({"epoch": 1, "lr": 0.1}, "ck.pth")
    with pytest.raises(CheckpointFormatError, match="entry 'step' holds a int"):
        extract_state_dict({"w": np.ones(1), "step": 3})
    with pytest.raises(CheckpointFormatError, match="no state dict"):
        extract_state_dict([np.ones(1)])


def test_foreign_objects_outside_and_inside_state_dict(tmp_path):
    cfg = pw.Foreign("yacs.config.CfgNode", state={"frozen": True},
                     entries={"MODEL": pw.Foreign("yacs.config.CfgNode", entries={"NAME": "x"})})
    obj = {"model": {"w": np.ones(2, np.float32)}, "config": cfg, "epoch": 1,
           "args": argparse.Namespace(lr=0.1), "scheduler": [pw.Foreign("timm.scheduler.Cosine")]}
    pw.save(obj, tmp_path / "ok.pth")
    state, info = read_state_dict(tmp_path / "ok.pth")
    assert list(state) == ["w"]
    assert info["ignored_objects"] == ["config: yacs.config.CfgNode", "args: argparse.Namespace",
                                       "scheduler[0]: timm.scheduler.Cosine"]
    loaded = load_pth(tmp_path / "ok.pth")
    assert loaded["config"].items["MODEL"].items == {"NAME": "x"}
    assert loaded["config"].state == {"frozen": True}

    pw.save({"state_dict": {"w": np.ones(2), "hook": pw.Foreign("mylib.Hook", args=(1,))}},
            tmp_path / "bad.pth")
    with pytest.raises(CheckpointFormatError, match="entry 'hook' holds a mylib.Hook"):
        read_state_dict(tmp_path / "bad.pth")
    pw.save({"model": pw.Foreign("timm.models.Net", state={"training": False})}, tmp_path / "m.pth")
    with pytest.raises(CheckpointFormatError, match="'model' holds a pickled timm.models.Net"):
        read_state_dict(tmp_path / "m.pth")


def test_foreign_module_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "trap_mod_pth.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n")
    pw.save({"state_dict": {"w": np.ones(1)}, "thing": pw.Foreign("trap_mod_pth.Thing")},
            tmp_path / "t.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    _, info = read_state_dict(tmp_path / "t.pth")
    assert info["ignored_objects"] == ["thing: trap_mod_pth.Thing"]
    assert not marker.exists() and "trap_mod_pth" not in sys.modules


def test_writer_layout_matches_torch(tmp_path):
    pw.save({"a": np.ones(3, np.float32), "b": np.arange(5)}, tmp_path / "my_ckpt.pth")
    with zipfile.ZipFile(tmp_path / "my_ckpt.pth") as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        assert names == [f"my_ckpt/{n}" for n in ("data.pkl", ".format_version", ".storage_alignment",
                                                  "byteorder", "data/0", "data/1", "version",
                                                  ".data/serialization_id")]
        assert z.read("my_ckpt/data.pkl")[:2] == b"\x80\x02"  # pickle protocol 2
        for info in infos:  # every record starts 64-byte aligned, stored uncompressed
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
            assert info.compress_type == zipfile.ZIP_STORED
    genuine = require_reference("pth/van_lka.pth")
    with zipfile.ZipFile(genuine) as z:
        torch_names = [n.split("/", 1)[1] for n in z.namelist() if "/data/" not in n]
    assert torch_names == [n.split("/", 1)[1] for n in names if "/data/" not in n]


def test_plain_pickles_of_numpy_objects(tmp_path):
    payload = {"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                         "f": np.asfortranarray(np.eye(2))},
               "s": np.float32(2.5), "i": np.int64(-3), "args": argparse.Namespace(lr=1)}
    for protocol in (0, 1, 2, 4):
        pw.write_zip(tmp_path / "np.pth", pickle.dumps(payload, protocol=protocol), {})
        state, info = read_state_dict(tmp_path / "np.pth")
        np.testing.assert_array_equal(state["w"], payload["model"]["w"])
        np.testing.assert_array_equal(state["f"], np.eye(2))
        assert state["f"].flags.c_contiguous
        assert info["ignored_objects"] == ["args: argparse.Namespace"]
        obj = load_pth(tmp_path / "np.pth")
        assert obj["s"] == np.float32(2.5) and type(obj["s"]) is np.float32
        assert obj["i"] == -3 and type(obj["i"]) is np.int64
    pw.write_zip(tmp_path / "obj.pth", pickle.dumps({"w": np.array([1, "a"], dtype=object)}, 2), {})
    with pytest.raises(CheckpointFormatError, match="object arrays"):
        load_pth(tmp_path / "obj.pth")


# ------------------------------------------------------------------- broken files
def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointFormatError, match="is not a PyTorch checkpoint") as err:
        load_pth(path)
    assert str(path) in str(err.value) and "torch.save" in str(err.value)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="is empty"):
        load_pth(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointFormatError, match="is not a PyTorch checkpoint"):
        load_pth(tmp_path / "text.pth")
    with open(tmp_path / "pickle.pth", "wb") as f:
        pickle.dump({"just": "a pickle"}, f, protocol=2)
    with pytest.raises(CheckpointFormatError, match="wrong magic number"):
        load_pth(tmp_path / "pickle.pth")


def test_zip_problems(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointFormatError, match="without a '<folder>/data.pkl'"):
        load_pth(tmp_path / "other.zip")
    data_pkl, storages = pw.dumps({"w": np.ones(4, np.float32), "b": np.ones(2, np.float32)})
    pw.write_zip(tmp_path / "missing.pth", data_pkl, {"0": storages[0][1].tobytes()})
    with pytest.raises(CheckpointFormatError, match=r"storage 'missing/data/1' is missing"):
        load_pth(tmp_path / "missing.pth")
    pw.write_zip(tmp_path / "short.pth", data_pkl, {"0": b"\0" * 16, "1": b"\0" * 4})
    with pytest.raises(CheckpointFormatError, match=r"holds 4 bytes, 8 expected"):
        load_pth(tmp_path / "short.pth")
    pw.write_zip(tmp_path / "garbled.pth", b"\x80\x02}q\x00(X\x01", {})
    with pytest.raises(CheckpointFormatError, match="is (truncated|corrupt)"):
        load_pth(tmp_path / "garbled.pth")


def test_out_of_bounds_view_and_unsupported_storage(tmp_path):
    base = pw.Storage(np.arange(6, dtype=np.float32))
    pw.save({"w": pw.Tensor(base, 2, (2, 3), (3, 1))}, tmp_path / "oob.pth")
    with pytest.raises(CheckpointFormatError, match="runs past the end"):
        load_pth(tmp_path / "oob.pth")
    data_pkl, _ = pw.dumps({"w": np.ones(2, np.int8)})
    data_pkl = data_pkl.replace(b"torch\nCharStorage", b"torch\nQInt8Storage")
    pw.write_zip(tmp_path / "q.pth", data_pkl, {"0": b"\0\0"})
    with pytest.raises(CheckpointFormatError, match="QInt8Storage"):
        load_pth(tmp_path / "q.pth")


def test_old_tar_format_is_rejected_clearly(tmp_path):
    with tarfile.open(tmp_path / "old.pth", "w") as tar:
        info = tarfile.TarInfo("pickle")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(CheckpointFormatError, match="tar-based format.*re-save"):
        load_pth(tmp_path / "old.pth")


# ---------------------------------------------------------------------- safety
class _Evil:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _payloads(marker):
    touch = f"touch {marker}"
    return {"os.system": _Evil(os.system, touch),
            "subprocess.call": _Evil(subprocess.call, ["touch", str(marker)]),
            "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
            "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
            "builtins.getattr": _Evil(getattr, _Evil(__import__, "os"), "system"),
            "builtins.__import__": _Evil(__import__, "os")}


def test_payload_is_real(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_payloads(marker)["os.system"], protocol=2))  # plain pickle runs it
    assert marker.exists()


@pytest.mark.parametrize("where", ["zip data.pkl", "inside state dict", "legacy main pickle",
                                   "legacy header"])
def test_malicious_pickles_are_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    for name, evil in _payloads(marker).items():
        path = tmp_path / "evil.pth"
        bare = pickle.dumps(evil, protocol=2)
        if where == "zip data.pkl":
            pw.write_zip(path, bare, {})
        elif where == "inside state dict":
            pw.save({"state_dict": {"w": np.ones(2), "x": evil}}, path)
        elif where == "legacy main pickle":
            pw.write_legacy(path, bare, {})
        else:
            header = pickle.dumps(pw.LEGACY_MAGIC, 2) + pickle.dumps(pw.LEGACY_PROTOCOL, 2) + bare
            pw.write_legacy(path, pickle.dumps({}, 2), {}, header=header)
        with pytest.raises(UnsafeCheckpointError) as err:
            read_state_dict(path)
        module, _, attr = name.rpartition(".")
        assert attr in str(err.value) and "arbitrary code" in str(err.value), str(err.value)
        assert not marker.exists(), name


@pytest.mark.parametrize("module,name", [("functools", "partial"), ("operator", "attrgetter"),
                                         ("posix", "system"), ("importlib", "import_module"),
                                         ("runpy", "run_path"), ("pickle", "loads"),
                                         ("__builtin__", "open"), ("copyreg", "add_extension"),
                                         ("shutil", "rmtree"), ("types", "FunctionType"),
                                         ("commands", "getoutput"), ("__builtin__", "eval"),
                                         ("yacs.config", "__builtins__")])
def test_dangerous_globals(tmp_path, module, name):
    pw.write_zip(tmp_path / "g.pth", f"c{module}\n{name}\n.".encode(), {})
    with pytest.raises(UnsafeCheckpointError, match=name):
        load_pth(tmp_path / "g.pth")


def test_codecs_encode_only_latin1(tmp_path):
    pw.write_zip(tmp_path / "c.pth", b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00"
                                     b"rot13\x86R.", {})
    with pytest.raises(UnsafeCheckpointError, match="rot13"):
        load_pth(tmp_path / "c.pth")


def test_pickle_cannot_modify_whitelisted_objects(tmp_path):
    # BUILD on a whitelisted function (or a builtin type) would poison later loads: refused.
    for program in (b"ctorch._utils\n_rebuild_tensor_v2\n}S'x'\nI1\nsb.",
                    b"ctorch._utils\n_rebuild_tensor_v2\n(N}S'fn'\nI1\nstb.",
                    b"ccollections\nOrderedDict\n(N}S'x'\nI1\nstb."):
        pw.write_zip(tmp_path / "p.pth", program, {})
        with pytest.raises(CheckpointFormatError, match="is corrupt"):
            load_pth(tmp_path / "p.pth")
    assert not hasattr(OrderedDict, "x")
    state, _ = read_state_dict(require_reference("pth/van_lka.pth"))  # still works afterwards
    assert len(state) == 6


def test_resource_abuse_is_refused(tmp_path):
    # a huge memo index would make the C unpickler allocate gigabytes before failing
    pw.write_zip(tmp_path / "memo.pth", b"\x80\x02]r\xff\xff\xff\x7f.", {})
    with pytest.raises(CheckpointFormatError, match="memo index"):
        load_pth(tmp_path / "memo.pth")
    # a length field far beyond the data
    pw.write_zip(tmp_path / "len.pth", b"\x80\x03B\xff\xff\xff\x7f.", {})
    with pytest.raises(CheckpointFormatError, match="is truncated"):
        load_pth(tmp_path / "len.pth")
    # absurdly deep nesting
    depth = 100_000
    pw.write_zip(tmp_path / "deep.pth", b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".", {})
    with pytest.raises(CheckpointFormatError, match="is corrupt"):
        load_pth(tmp_path / "deep.pth")
    # a zero-stride view expanding a few stored elements to billions
    base = pw.Storage(np.ones(2, np.float32))
    pw.save({"w": pw.Tensor(base, 0, (2, 10 ** 9), (1, 0))}, tmp_path / "expand.pth")
    with pytest.raises(CheckpointFormatError, match="stored elements"):
        load_pth(tmp_path / "expand.pth")


@pytest.mark.parametrize("filename,archive", [("ckpt.pth.tar", None), ("weights.pt", "archive")])
def test_archive_folder_name_varies(tmp_path, filename, archive):
    pw.save({"model": {"w": np.arange(3, dtype=np.float32)}}, tmp_path / filename, archive_name=archive)
    with zipfile.ZipFile(tmp_path / filename) as z:
        assert z.namelist()[0] == f"{archive or filename.split('.')[0]}/data.pkl"
    state, info = read_state_dict(tmp_path / filename)
    np.testing.assert_array_equal(state["w"], [0, 1, 2])
    assert info["container_key"] == "model"
