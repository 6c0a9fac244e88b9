"""Every known user mistake on the command-line tools, as a table: each row runs one tool as a user would (a new
process, a working directory of its own) and checks the exit code, the words of the message, that the output is one
``error:`` line plus at most a hint (no traceback), that the named files are left byte-for-byte untouched (or not
created), and that no ``rank_0/`` graph dump appears in the working directory. A new tool adds its rows here.

Also the success paths the issue names: a finished run extended with ``--resume auto --epochs 3``, an export of a
run (``-c RUN/config.yaml``) into a folder with a space whose MINDIR predicts what the checkpoint predicts, and Ctrl-C
during training (the resume command printed).
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, NamedTuple, Sequence

import numpy as np
import pytest

from engine_helpers import REPO, cli_args, src_env

TOOLS = {
    "train": [str(REPO / "scripts" / "train.py")],
    "eval": [str(REPO / "scripts" / "eval.py")],
    "export": [str(REPO / "export" / "export.py")],
    "infer": [str(REPO / "scripts" / "infer.py")],
    "bench": [str(REPO / "scripts" / "benchmark.py")],
    "convert": ["-m", "convattn.convert"],
}
TINY_KW = "{embed_dims: [8, 16], depths: [1, 1], mlp_ratios: [2, 2]}"


def _run(tool: str, args: Sequence[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = src_env()
    env.pop("MS_OM_PATH", None)  # the tools must keep graph dumps out of cwd by themselves
    env.pop("CONVATTN_DEBUG", None)
    return subprocess.run([sys.executable, *TOOLS[tool], *args], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout)


def _digest(path: Path):
    if not path.exists():
        return None
    if path.is_dir():
        return sorted((p.name, _digest(p)) for p in path.iterdir())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ctx(digits32, tmp_path_factory):
    """A finished two-epoch run of a tiny VAN on the digits, and the files the mistakes are made with."""
    root = tmp_path_factory.mktemp("cli_errors")
    run = root / "run"
    r = _run("train", cli_args(data_dir=digits32, ckpt_dir=run, epochs=2, max_steps_per_epoch=3,
                               model_kwargs=TINY_KW), root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (root / "bad.yaml").write_text("model: van_b0\nbatch_size: [1\n")
    (root / "junk.ckpt").write_bytes(os.urandom(4096))
    (root / "junk.pth").write_bytes(b"not a pytorch checkpoint at all" * 10)
    (root / "a_file").write_text("x")
    import mindspore as ms
    weights = {k: v for k, v in ms.load_checkpoint(str(run / "van_b0_best.ckpt")).items() if not k.startswith("train.")}
    ms.save_checkpoint([{"name": k, "data": v} for k, v in weights.items()], str(root / "weights_only.ckpt"))
    empty = root / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    return {"root": root, "run": run, "digits": digits32, "cfg": run / "config.yaml"}


class Case(NamedTuple):
    id: str
    tool: str
    argv: Callable[[dict], List[str]]
    codes: tuple  # accepted exit codes
    words: tuple  # each must appear in stderr + stdout
    untouched: Callable[[dict], List[Path]] = lambda c: [c["run"]]  # files/folders that must not change
    forbidden: tuple = ()  # words that must not appear (a misleading hint)


def _train(c, **over):
    base = dict(data_dir=c["digits"], model_kwargs=TINY_KW, epochs=1, max_steps_per_epoch=2)
    base.update(over)
    return cli_args(**base)


CASES = [
    Case("yaml-syntax", "train", lambda c: ["-c", str(c["root"] / "bad.yaml")], (2,),
         ("YAML syntax error", "bad.yaml", "line 3")),
    Case("eval-junk-ckpt", "eval", lambda c: ["-c", str(c["cfg"]), "--ckpt", str(c["root"] / "junk.ckpt")], (1,),
         ("junk.ckpt", "not a readable MindSpore checkpoint"), forbidden=("match the run",)),
    Case("eval-other-architecture", "eval",
         lambda c: ["-c", str(c["cfg"]), "--ckpt", str(c["run"] / "van_b0_best.ckpt"),
                    "--model_kwargs", "{embed_dims: [8, 24], depths: [1, 1], mlp_ratios: [2, 2]}"], (1,),
         ("does not match", "hint:", "--model_kwargs")),
    Case("batch-larger-than-the-set", "train", lambda c: _train(c, batch_size=5000, ckpt_dir=c["root"] / "r_bs"), (2,),
         ("batch_size 5000", "larger than the training set"), lambda c: [c["root"] / "r_bs"]),
    Case("acmix-input-too-small", "train",
         lambda c: _train(c, model="acmix_resnet26", model_kwargs="{layers: [1, 1, 1, 1]}", image_size=8,
                          ckpt_dir=c["root"] / "r_small"), (1, 2),
         ("needs inputs of at least 49x49", "got 8x8"), lambda c: [c["root"] / "r_small"]),
    Case("resume-junk-file", "train",
         lambda c: ["-c", str(c["cfg"]), "--resume", str(c["root"] / "junk.ckpt"), "--epochs", "3"], (1,),
         ("not a readable MindSpore checkpoint",)),
    Case("resume-weights-only-file", "train",
         lambda c: ["-c", str(c["cfg"]), "--resume", str(c["root"] / "weights_only.ckpt"), "--epochs", "3"], (2,),
         ("not a convattn training checkpoint", "--pretrained")),
    Case("resume-finished-run", "train", lambda c: ["-c", str(c["cfg"]), "--resume", "auto"], (0,),
         ("the run is finished", "--epochs N")),
    Case("empty-train-folder", "train",
         lambda c: _train(c, dataset="imagefolder", data_dir=c["root"] / "empty", ckpt_dir=c["root"] / "r_empty"),
         (1, 2), ("no class sub-folders",), lambda c: [c["root"] / "r_empty"]),
    Case("ckpt-dir-under-a-file", "train", lambda c: _train(c, ckpt_dir=c["root"] / "a_file" / "run"), (1,),
         ("cannot be created", "is a file")),
    Case("mistyped-digits-data-dir", "train",
         lambda c: _train(c, data_dir=c["root"] / "digts", ckpt_dir=c["root"] / "r_typo"), (2,),
         ("digts does not exist", "check --data_dir"), lambda c: [c["root"] / "digts", c["root"] / "r_typo"]),
    Case("unknown-config-key", "train", lambda c: _train(c, learnin_rate=0.1), (2,), ("learnin_rate",)),
    Case("export-run-config-missing", "export", lambda c: ["-c", str(c["root"] / "nope.yaml")], (2,),
         ("nope.yaml does not exist",)),
    Case("export-out-under-a-file", "export",
         lambda c: ["-c", str(c["cfg"]), "--format", "MINDIR", "--out", str(c["root"] / "a_file" / "x")], (1,),
         ("cannot be created",)),
    Case("infer-out-under-a-file", "infer",
         lambda c: ["-c", str(c["cfg"]), c["digits"], "--out", str(c["root"] / "a_file" / "p.csv")], (1,),
         ("cannot be created",)),
    Case("bench-out-under-a-file", "bench",
         lambda c: ["--models", "van_b0", "--out", str(c["root"] / "a_file" / "bench")], (1,),
         ("cannot be created",)),
    Case("pretrained-junk-file", "train", lambda c: _train(c, pretrained=c["root"] / "junk.pth",
                                                           ckpt_dir=c["root"] / "r_pre"), (1, 2),
         ("junk.pth",), lambda c: [c["root"] / "r_pre"]),
    Case("infer-junk-mindir", "infer", lambda c: ["--mindir", str(c["root"] / "junk.ckpt"), "--model", "van_b0",
                                                  c["digits"]], (1,), ("not a loadable MINDIR",)),
    Case("convert-junk-pth", "convert",
         lambda c: ["--model", "van_b0", str(c["root"] / "junk.pth"), str(c["root"] / "out.ckpt")], (1, 2),
         ("junk.pth",), lambda c: [c["root"] / "out.ckpt"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mistake_gets_one_line_and_loses_nothing(ctx, case, tmp_path):
    watched = case.untouched(ctx)
    before = [_digest(p) for p in watched]
    r = _run(case.tool, case.argv(ctx), tmp_path)
    text = r.stdout + r.stderr
    assert r.returncode in case.codes, f"exit {r.returncode}\n{text[-3000:]}"
    for word in case.words:
        assert word in text, f"{word!r} not in:\n{text[-3000:]}"
    for word in case.forbidden:
        assert word not in text, text[-3000:]
    assert "Traceback" not in text and "C++ Call Stack" not in text, text[-3000:]
    if r.returncode:
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        hints = [ln for ln in r.stderr.splitlines() if ln.startswith("hint:")]
        assert len(errors) == 1 and len(hints) <= 1, r.stderr
        # at most six lines of our own (MindSpore's [WARNING] log lines aside)
        ours = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[WARNING]")]
        assert len(ours) <= 6, r.stderr
    assert [_digest(p) for p in watched] == before, "a failed start changed files it must not touch"
    assert not (tmp_path / "rank_0").exists(), "a graph dump was written into the working directory"


def test_debug_flag_shows_the_traceback(ctx, tmp_path):
    r = _run("eval", ["-c", str(ctx["cfg"]), "--ckpt", str(ctx["root"] / "junk.ckpt"), "--debug"], tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr and "error: " in r.stderr


def test_resume_extends_a_finished_run(ctx, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ctx["run"], run)
    cfg = (run / "config.yaml").read_text().replace(str(ctx["run"]), str(run))
    (run / "config.yaml").write_text(cfg)
    r = _run("train", ["-c", str(run / "config.yaml"), "--resume", "auto", "--epochs", "3"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the lr schedule is recomputed for 3 epochs" in r.stdout
    assert "epoch 3/3 done" in r.stdout and (run / "van_b0-3_3.ckpt").exists()
    import mindspore as ms
    meta = ms.load_checkpoint(str(run / "van_b0-3_3.ckpt"))
    assert int(meta["train.epoch"].asnumpy()) == 3 and int(meta["train.global_step"].asnumpy()) == 9
    # another batch size from the end of an epoch: the epoch length changes, said in a line
    r = _run("train", ["-c", str(run / "config.yaml"), "--resume", "auto", "--epochs", "4", "--batch_size", "8",
                        "--max_steps_per_epoch", "5"],
             tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch size, device count or accumulation changed" in r.stdout and "epoch 4/4 done" in r.stdout


def _top1(text: str) -> List[str]:
    return [ln.split(": ", 1)[1].split(" (")[0] for ln in text.splitlines() if ln.endswith("%)") and ": " in ln]


def test_export_of_a_run_into_a_folder_with_a_space_predicts_like_the_checkpoint(ctx, tmp_path):
    out = tmp_path / "dir with space"
    r = _run("export", ["-c", str(ctx["cfg"]), "--ckpt", str(ctx["run"] / "van_b0_best.ckpt"), "--format", "MINDIR",
                        "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    side = json.loads((out / "van_b0.mindir.json").read_text())
    assert side["input"]["shape"] == [1, 3, 16, 16]  # the run's image size, not the model's 224
    assert side["preprocessing"]["crop_pct"] == 1.0 and side["preprocessing"]["interpolation"] == "bilinear"
    assert side["run_config"] == str(ctx["cfg"])
    images = [str(sorted((Path(ctx["digits"]) / "val" / str(k)).iterdir())[0]) for k in (0, 3, 7, 9)]
    from_ckpt = _run("infer", ["-c", str(ctx["cfg"]), *images, "--topk", "1"], tmp_path)
    from_mindir = _run("infer", ["--mindir", str(out / "van_b0.mindir"), *images, "--topk", "1"], tmp_path)
    assert from_ckpt.returncode == from_mindir.returncode == 0, from_ckpt.stderr + from_mindir.stderr
    assert len(_top1(from_ckpt.stdout)) == 4 and _top1(from_ckpt.stdout) == _top1(from_mindir.stdout)
    # infer takes num_classes inside --model_kwargs too
    r = _run("infer", ["--ckpt", str(ctx["run"] / "van_b0_best.ckpt"), images[0], "--model_kwargs",
                       TINY_KW[:-1] + ", num_classes: 10}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (tmp_path / "rank_0").exists()


def test_ctrl_c_prints_the_last_checkpoint_and_the_resume_command(ctx, tmp_path):
    args = cli_args(data_dir=ctx["digits"], ckpt_dir=tmp_path / "run", epochs=200, model_kwargs=TINY_KW,
                    max_steps_per_epoch=3)
    env = src_env()
    proc = subprocess.Popen([sys.executable, *TOOLS["train"], *args], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((tmp_path / "run").glob("van_b0-2_*.ckpt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "last checkpoint:" in out and "--resume auto" in out and "Traceback" not in err
    assert "interrupted" in err
