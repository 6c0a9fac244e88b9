"""``create_model(name, pretrained=True)``: official weights downloaded, verified, converted and cached -- all offline.

A loopback HTTP server (127.0.0.1, a thread of this process, stopped by the fixture) serves official-format files
written here (``pth_writer``: torch.save's zip layout without torch, seeded tensors, the containers the official
repositories use) under their registry file names, through ``CONVATTN_WEIGHTS_MIRROR``; ``CONVATTN_HOME`` is a
temporary folder. Nothing here reaches another host. The cheap cases are in the quick tier; the four that build
full-size networks or start processes (about 35 s on 2 cores) are not.
"""
import argparse
import hashlib
import os
import queue
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

import convattn
import pth_writer as pw
from conftest import REPO, require_reference
from convattn.hub import (WeightsHashError, WeightsManualError, WeightsNotReleasedError, WeightsUnavailableError,
                          converted_path, fetch_official)
from convattn.models import registry
from convattn.models.registry import weights_entry
from official_state import swin_official_state
from parity import tolerance

SWIN_FILE = "swin_tiny_patch4_window7_224.pth"
VAN_FILE = "van_tiny_754.pth.tar"
VAN_HF = "https://huggingface.co/Visual-Attention-Network/VAN-Tiny-original/resolve/main/van_tiny_754.pth.tar"
VAN_SHA = "058bda07d27a89f27bbec8f3e47e6bda5de4f51dc59d0fb1f3cb835acb9130d8"
WAIT_S = 120  # bound on every wait for another thread or process


# --------------------------------------------------------------------------------------------- loopback server
class WeightsServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1; counts GETs per name; ``drop_once``: the first GET of that name
    sends its full Content-Length, half the bytes, and closes; ``hold``: the GET sends a first chunk, sets
    ``started[name]`` and waits for ``gate[name]`` before the rest."""

    def __init__(self):
        self.files, self.hits, self.drop_once, self.gate, self.started = {}, {}, set(), {}, {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = unquote(self.path.lstrip("/"))
                if name not in server.files:
                    self.send_error(404)
                    return
                server.hits[name] = server.hits.get(name, 0) + 1
                data = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if name in server.drop_once:
                    server.drop_once.discard(name)
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if name in server.gate:
                    self.wfile.write(data[:4096])
                    self.wfile.flush()
                    server.started[name].set()
                    server.gate[name].wait(WAIT_S)
                    data = data[4096:]
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def hold(self, name):
        self.gate[name], self.started[name] = threading.Event(), threading.Event()

    def stop(self):
        for g in self.gate.values():
            g.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT_S)


@pytest.fixture
def server():
    s = WeightsServer()
    yield s
    s.stop()


@pytest.fixture
def home(tmp_path, monkeypatch, server):
    """An empty CONVATTN_HOME, the loopback server as the mirror, no proxy for it, online."""
    d = tmp_path / "home"
    monkeypatch.setenv("CONVATTN_HOME", str(d))
    monkeypatch.setenv("CONVATTN_WEIGHTS_MIRROR", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("CONVATTN_OFFLINE", raising=False)
    return d


def _files(d: Path):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) if d.exists() else []


def _params(net):
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def _same_params(a, b):
    pa, pb = _params(a), _params(b)
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def _van_b0_file(tmp_path) -> Path:
    """The official van_b0 fixture's state in the VAN (timm trainer) container: {'state_dict', 'epoch', 'args'}."""
    with np.load(require_reference("van_b0.npz")) as f:
        state = {k[len("state/"):]: f[k] for k in f.files if k.startswith("state/")}
    path = tmp_path / VAN_FILE
    pw.save({"epoch": 299, "arch": "van_tiny", "args": argparse.Namespace(model="van_tiny", lr=1e-3),
             "state_dict": {k: pw.Tensor.from_array(v) for k, v in state.items()}}, str(path))
    return path


@pytest.fixture
def van_b0_as_released(monkeypatch):
    """The test's van_b0 file is not the released one: give the registry entry its hash (and no published size)."""
    def use(path: Path):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        weights = registry._default_cfgs["van_b0"]["weights"]
        monkeypatch.setitem(weights, "sha256", sha)
        monkeypatch.setitem(weights, "size", None)
        return sha
    return use


# --------------------------------------------------------------------------------------------- registry (no network)
@pytest.mark.quick
def test_every_model_has_a_weights_entry_and_the_released_ones_are_listed():
    released = set(convattn.list_models(pretrained=True))
    assert released == {"van_b0", "van_b1", "van_b2", "van_b3", "swin_tiny", "swin_small", "acmix_swin_tiny",
                        "acmix_swin_small", "deit_tiny", "deit_small", "pvt_tiny", "pvt_small", "resnet34", "resnet50",
                        "san10_pairwise", "san15_pairwise", "san19_pairwise", "san10_patchwise", "san15_patchwise",
                        "san19_patchwise"}
    for name in convattn.list_models():
        w = registry.get_model_cfg(name)["weights"]
        assert w is not None and w["status"] in registry.WEIGHTS_STATUSES, name
        if w["status"] == "download":
            assert w["urls"] and all(u.startswith("https://") for u in w["urls"]) and w["file"], name
            assert w["top1"] and w["licence"] and w["container"] and w["hash_note"], name
            assert w["preprocessing"]["input_size"] == (3, 224, 224), name
            if w["sha256_prefix"]:
                assert w["sha256_prefix"] in w["file"], name
    assert weights_entry("van_b0")["sha256"] == VAN_SHA and weights_entry("van_b0")["urls"][0] == VAN_HF
    assert weights_entry("deit_tiny")["sha256_prefix"] == "a1311bcf"
    assert weights_entry("swin_tiny")["sha256"] is None and "none published" in weights_entry("swin_tiny")["hash_note"]


@pytest.mark.quick
def test_cache_keys_and_mirror_urls(monkeypatch, tmp_path):
    from convattn.convert.converter import CONVERTER_VERSION
    from convattn.hub import cache_home, download_urls

    monkeypatch.delenv("CONVATTN_HOME", raising=False)
    assert cache_home() == Path("~/.cache/convattn").expanduser()
    monkeypatch.setenv("CONVATTN_HOME", str(tmp_path))
    want = tmp_path / "converted" / f"van_b0-{VAN_SHA[:16]}-conv{CONVERTER_VERSION}.ckpt"
    assert converted_path("van_b0", VAN_SHA) == want
    monkeypatch.delenv("CONVATTN_WEIGHTS_MIRROR", raising=False)
    assert download_urls(weights_entry("van_b0"))[0] == VAN_HF and len(download_urls(weights_entry("van_b0"))) == 2
    monkeypatch.setenv("CONVATTN_WEIGHTS_MIRROR", "http://cache.example/weights")
    assert download_urls(weights_entry("van_b0")) == ["http://cache.example/weights/van_tiny_754.pth.tar"]


@pytest.mark.quick
def test_the_weights_table_in_the_docs_is_the_registry(capsys):
    from convattn.hub.__main__ import main, weights_table

    text = (REPO / "docs" / "convert.md").read_text()
    block = text.split("<!-- weights-table:begin -->\n", 1)[1].split("<!-- weights-table:end -->", 1)[0]
    assert block.strip() == weights_table().strip(), "regenerate: python -m convattn.hub list --readme docs/convert.md"
    assert main(["list"]) == 0 and "| `van_b0` | `van_tiny_754.pth.tar` |" in capsys.readouterr().out


@pytest.mark.quick
@pytest.mark.parametrize("name,says", [
    ("acmix_resnet26", "ACmix-ResNet"), ("acmix_san10", "In process"), ("acmix_pvt_tiny", "In process"),
    ("xvolution_resnet34", "no code and no weights"), ("deit_tiny_relu", "no code and no weights"),
    ("swin_tiny_dw", "no code and no weights"), ("van_b4", "B0..B3 only"), ("resnet26", "ResNet-26/38"),
])
def test_never_released_weights_are_refused(name, says, home, server):
    with pytest.raises(WeightsNotReleasedError, match="no official pretrained weights: never released") as err:
        convattn.create_model(name, pretrained=True)
    assert says in str(err.value)
    assert not server.hits and _files(home) == []


@pytest.mark.quick
def test_manual_weights_are_refused_with_the_link_and_the_commands(home, server):
    with pytest.raises(WeightsManualError) as err:
        convattn.create_model("san10_pairwise", pretrained=True)
    msg = str(err.value)
    assert "https://drive.google.com/open?id=19ZJn48UpiF_j8e1-UU9UZ4AVfLjmwPzH" in msg
    assert "python -m convattn.convert --model san10_pairwise DOWNLOADED.pth san10_pairwise.ckpt" in msg
    assert "pretrained='san10_pairwise.ckpt'" in msg
    assert not server.hits and _files(home) == []


@pytest.mark.quick
def test_offline_with_an_empty_cache_names_the_file_url_hash_and_path(home, server, monkeypatch):
    monkeypatch.setenv("CONVATTN_OFFLINE", "1")
    monkeypatch.delenv("CONVATTN_WEIGHTS_MIRROR")
    with pytest.raises(WeightsUnavailableError) as err:
        convattn.create_model("van_b0", pretrained=True)
    msg = str(err.value)
    for part in (VAN_FILE, VAN_HF, VAN_SHA, str(home / "official" / VAN_FILE), "CONVATTN_OFFLINE=1"):
        assert part in msg, part
    assert not server.hits and _files(home) == []


@pytest.mark.quick
def test_the_test_swin_layout_is_the_official_one():
    """tests/official_state.py writes the official Swin layout: against the fixture written by the official
    ACmix-Swin code (the Swin layout plus ACmix's own keys), same keys, shapes, dtypes and buffers."""
    with np.load(require_reference("acmix_swin_net_e32_d2222.npz")) as f:
        acmix = ("attn.rate1", "attn.rate2", "attn.fc.", "attn.dep_conv.")
        official = {k[len("state/"):]: f[k] for k in f.files
                    if k.startswith("state/") and not any(a in k for a in acmix)}
    ours = swin_official_state(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {k: (v.shape, v.dtype) for k, v in official.items()}
    for k, v in official.items():
        if k.endswith(("relative_position_index", "attn_mask")):
            np.testing.assert_array_equal(ours[k], v, err_msg=k)


# --------------------------------------------------------------------------------------------- downloads
@pytest.mark.quick
def test_junk_bytes_are_refused_on_their_sha256_and_nothing_is_kept(home, server):
    junk = os.urandom(300_000)
    server.files[VAN_FILE] = junk
    with pytest.raises(WeightsHashError) as err:
        convattn.create_model("van_b0", pretrained=True)
    msg = str(err.value)
    assert VAN_SHA in msg and hashlib.sha256(junk).hexdigest() in msg and "nothing was kept" in msg
    assert server.hits == {VAN_FILE: 1}
    assert _files(home) == []  # no partial file, no lock file


@pytest.mark.quick
def test_a_file_name_prefix_is_checked_and_a_cached_file_is_verified(home, server, monkeypatch):
    """DeiT / torchvision publish the sha256's first 8 hex digits in the file name: checked before the rename. A
    file put in the cache by hand is hashed before use (offline too), and a wrong one is refused, not deleted."""
    name = "deit_tiny_patch16_224-a1311bcf.pth"
    junk = os.urandom(100_000)
    server.files[name] = junk
    with pytest.raises(WeightsHashError, match="expected a1311bcf\\.\\.\\., got " + hashlib.sha256(junk).hexdigest()):
        fetch_official("deit_tiny", progress=False)
    assert _files(home) == []
    weights = registry._default_cfgs["deit_tiny"]["weights"]
    monkeypatch.setitem(weights, "sha256_prefix", hashlib.sha256(junk).hexdigest()[:8])
    assert fetch_official("deit_tiny", progress=False)[1] == hashlib.sha256(junk).hexdigest()
    monkeypatch.setenv("CONVATTN_OFFLINE", "1")
    placed = home / "official" / VAN_FILE
    placed.write_bytes(b"not the released file")
    with pytest.raises(WeightsHashError, match="does not have the registered hash"):
        fetch_official("van_b0")
    assert placed.exists() and server.hits == {name: 2}


@pytest.mark.quick
def test_a_dropped_connection_leaves_nothing_and_the_next_call_downloads(home, server):
    data = os.urandom(3 << 20)
    server.files["pvt_tiny.pth"] = data
    server.drop_once.add("pvt_tiny.pth")
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_official("pvt_tiny", progress=False)
    assert server.url + "pvt_tiny.pth" in str(err.value) and str(home / "official" / "pvt_tiny.pth") in str(err.value)
    assert _files(home) == []
    path, sha = fetch_official("pvt_tiny", progress=False)
    assert path.read_bytes() == data and sha == hashlib.sha256(data).hexdigest()
    assert server.hits == {"pvt_tiny.pth": 2}
    assert _files(home) == ["official/pvt_tiny.pth", "official/pvt_tiny.pth.json"]
    assert fetch_official("pvt_tiny", progress=False) == (path, sha) and server.hits == {"pvt_tiny.pth": 2}


def test_swin_tiny_download_converts_caches_and_loads_offline(tmp_path, home, server, monkeypatch, pynative):
    """The issue's check: a full-size official-format Swin-T file ({'model': state_dict}, buffers included) served
    as swin_tiny_patch4_window7_224.pth; pretrained=True equals the converter path; then offline from the cache;
    and pretrained='<the .pth>' loads the same weights."""
    import mindspore as ms
    from convattn.convert import load_official_state, read_official_state

    src = tmp_path / SWIN_FILE
    pw.save({"model": {k: pw.Tensor.from_array(v) for k, v in swin_official_state(seed=7).items()},
             "epoch": 299, "max_accuracy": 81.2}, str(src))
    server.files[SWIN_FILE] = src.read_bytes()
    sha = hashlib.sha256(server.files[SWIN_FILE]).hexdigest()

    net = convattn.create_model("swin_tiny", pretrained=True)
    assert server.hits == {SWIN_FILE: 1}
    ckpt = converted_path("swin_tiny", sha)
    assert _files(home) == [f"converted/{ckpt.name}", f"official/{SWIN_FILE}", f"official/{SWIN_FILE}.json"]
    assert net.load_report["source"]["sha256"] == sha and net.load_report["skipped_classifier"] == []

    ref = convattn.create_model("swin_tiny")  # the converter path on the same file
    load_official_state(ref, read_official_state(str(src)))
    _same_params(net, ref)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    net.set_train(False)
    ref.set_train(False)
    out, want = net(x).asnumpy(), ref(x).asnumpy()
    assert np.isfinite(want).all() and float(np.abs(want).max()) > 0
    assert float(np.abs(out - want).max()) <= tolerance(want)

    server.stop()  # the cache is all there is
    monkeypatch.setenv("CONVATTN_OFFLINE", "1")
    _same_params(convattn.create_model("swin_tiny", pretrained=True), ref)
    _same_params(convattn.create_model("swin_tiny", pretrained=str(src)), ref)
    assert server.hits == {SWIN_FILE: 1}


def test_van_b0_download_reproduces_the_official_output_and_drops_only_the_head(tmp_path, home, server,
                                                                                van_b0_as_released, pynative, caplog):
    """The official van_b0 fixture's weights in the VAN container, verified on their full sha256, converted and
    loaded: the official code's output; from the cache with 10 classes: exactly head.weight/head.bias dropped;
    and the same file as pretrained='...pth.tar' (on the fly)."""
    import mindspore as ms

    src = _van_b0_file(tmp_path)
    sha = van_b0_as_released(src)
    server.files[VAN_FILE] = src.read_bytes()
    with np.load(require_reference("van_b0.npz")) as f:
        x, want = f["input"], f["output"]
    for pretrained in (True, str(src)):
        net = convattn.create_model("van_b0", pretrained=pretrained)
        net.set_train(False)
        out = net(ms.Tensor(x)).asnumpy()
        assert float(np.abs(out - want).max()) <= tolerance(want), pretrained
    assert server.hits == {VAN_FILE: 1} and (home / "converted" / converted_path("van_b0", sha).name).is_file()
    for pretrained in (True, str(src)):
        caplog.clear()
        net = convattn.create_model("van_b0", num_classes=10, pretrained=pretrained)
        assert net.load_report["skipped_classifier"] == ["head.bias", "head.weight"]
        assert "except the classifier (head.bias, head.weight)" in caplog.text
    assert server.hits == {VAN_FILE: 1}


def test_the_command_lines_and_recipes_take_pretrained(tmp_path, home, server, van_b0_as_released, capsys):
    """--pretrained (bare: the official weights; or a file) in train/eval configs, export and infer; the VAN-B0
    fine-tuning recipes validate, and the trainer's build from the served official file re-initialises the head."""
    from convattn.deploy.cli import build_parser as export_parser
    from convattn.deploy.export import ExportError, _build
    from convattn.deploy.infer import InferError, Predictor
    from convattn.deploy.infer_cli import build_parser as infer_parser
    from convattn.engine.cli import eval_main
    from convattn.engine.config import ConfigError, load_config, parse_cli, validate
    from convattn.engine.trainer import _describe_init, build_model

    base = ["--model", "van_b0", "--dataset", "digits", "--num_classes", "10", "--data_dir", str(tmp_path / "digits")]
    assert validate(parse_cli(base + ["--pretrained"], "")).pretrained is True
    assert validate(parse_cli(base + ["--pretrained", "--seed", "1"], "")).pretrained is True
    assert validate(parse_cli(base + ["--pretrained", "false"], "")).pretrained is None
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"")
    assert validate(parse_cli(base + ["--pretrained", str(pth)], "")).pretrained == str(pth)
    with pytest.raises(ConfigError, match="does not exist"):
        validate(parse_cli(base + ["--pretrained", str(tmp_path / "missing.pth")], ""))
    with pytest.raises(ConfigError, match="never released"):
        validate(parse_cli(base[:1] + ["acmix_resnet26"] + base[2:] + ["--pretrained"], ""))
    with pytest.raises(ConfigError, match="drive.google.com"):
        validate(parse_cli(base[:1] + ["san10_pairwise"] + base[2:] + ["--pretrained"], ""))
    tree = tmp_path / "data"
    for split in ("train", "val"):
        (tree / split).mkdir(parents=True)
    for dev in ("gpu", "ascend"):
        raw = load_config(str(REPO / "configs" / "van" / f"van_b0_finetune_{dev}.yaml"))
        cfg = validate(dict(raw, data_dir=str(tree)))
        assert cfg.model == "van_b0" and cfg.pretrained is True and cfg.num_classes != 1000
    assert eval_main(base) == 2 and "--pretrained" in capsys.readouterr().err
    assert export_parser().parse_args(["--model", "van_b0", "--pretrained"]).pretrained is True
    assert export_parser().parse_args(["--model", "van_b0", "--pretrained", "x.pth"]).pretrained == "x.pth"
    assert infer_parser().parse_args(["a.png", "--model", "van_b0", "--pretrained"]).pretrained is True
    with pytest.raises(ExportError, match="not several"):
        _build("van_b0", str(pth), False, None, {}, pretrained=True)
    with pytest.raises(InferError, match="needs --model"):
        Predictor(pretrained=True)

    src = _van_b0_file(tmp_path)
    van_b0_as_released(src)
    server.files[VAN_FILE] = src.read_bytes()
    cfg = validate(parse_cli(["-c", str(REPO / "configs" / "van" / "van_b0_finetune_gpu.yaml"), "--dataset",
                              "digits", "--data_dir", str(tmp_path / "digits"), "--num_classes", "10", "--device_target",
                              "CPU", "--amp_level", "O0"], ""))
    tuned = build_model(cfg)  # the trainer's build: the served official file, the head re-initialised
    line = _describe_init(cfg, tuned.load_report)
    assert "initialised from van_b0's official weights van_tiny_754.pth.tar" in line
    assert "classifier head.bias, head.weight re-initialised for 10 classes" in line
    net, _, classes = _build("van_b0", None, False, None, {}, pretrained=True)  # export's build, from the cache
    assert classes == 1000 and net.load_report["source"]["file"] == VAN_FILE
    _same_params(_build("van_b0", None, False, None, {}, pretrained=str(src))[0], net)  # export --pretrained FILE
    _same_params(Predictor(model="van_b0", pretrained=True, log=lambda *a: None).net, net)
    assert server.hits == {VAN_FILE: 1}


# --------------------------------------------------------------------------------------------- two processes
_CHILD = """
from convattn.models import registry
from convattn.hub import official_checkpoint
weights = registry._default_cfgs["van_b0"]["weights"]
weights["sha256"], weights["size"] = {sha!r}, None
path, source = official_checkpoint("van_b0", progress=False)
print("CKPT", path, source["sha256"], flush=True)
"""


def _lines(proc, q, kept):
    for line in proc.stderr:
        kept.append(line)
        q.put(line)


def test_concurrent_first_calls_from_two_processes_download_and_convert_once(tmp_path, home, server,
                                                                            van_b0_as_released):
    """Process A's download is held open by the server until process B says it waits for A: one GET, one
    conversion, the same checkpoint for both."""
    src = _van_b0_file(tmp_path)
    sha = van_b0_as_released(src)
    server.files[VAN_FILE] = src.read_bytes()
    server.hold(VAN_FILE)
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(sha=sha))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    procs, readers, queues, errs = [], [], [], [[], []]
    try:
        for i in range(2):
            p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env, cwd=str(tmp_path))
            q = queue.Queue()
            readers.append(threading.Thread(target=_lines, args=(p, q, errs[i]), daemon=True))
            readers[-1].start()
            procs.append(p)
            queues.append(q)
            if i == 0:
                assert server.started[VAN_FILE].wait(WAIT_S), "process A never started its download"
        seen = ""
        while "waiting for another process" not in seen:
            seen += queues[1].get(timeout=WAIT_S)  # B reached the lock while A's download is open
        server.gate[VAN_FILE].set()
        for p, r in zip(procs, readers):
            p.wait(300)
            r.join(WAIT_S)
        outs = [p.stdout.read() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    ckpts = {line.split()[1] for out in outs for line in out.splitlines() if line.startswith("CKPT")}
    assert ckpts == {str(converted_path("van_b0", sha))}
    assert server.hits == {VAN_FILE: 1}
    assert _files(home) == [f"converted/{converted_path('van_b0', sha).name}", f"official/{VAN_FILE}",
                            f"official/{VAN_FILE}.json"]
    err = "".join(errs[0] + errs[1])
    assert err.count("converting ") == 1 and err.count("downloading ") == 1, err
