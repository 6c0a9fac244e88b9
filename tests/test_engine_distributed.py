"""Data parallelism as it is meant: the ranks read disjoint shards whose union is the epoch, and one 2-rank step
(two msrun "nodes" started by scripts/run_distribute_train.sh on this machine, one worker each) equals one
1-process step over the concatenated batch, for a network without batch statistics. Plus the launcher's bad input."""
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from engine_helpers import REPO

LAUNCHER = REPO / "scripts" / "run_distribute_train.sh"
DEIT = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0)  # LayerNorm only
CFG = dict(dataset="digits", num_classes=10, image_size=16, crop_pct=1.0, interpolation="bilinear",
           scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0, model="deit_tiny", model_kwargs=DEIT, drop_path_rate=0.0,
           opt="momentum", lr=0.05, weight_decay=1e-4, min_lr=1e-4, epochs=1, val_interval=0, warmup_epochs=0,
           mode=0, seed=0, num_parallel_workers=1, log_interval=1, batch_size=8)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    from convattn.data import write_digits_imagefolder
    root = tmp_path_factory.mktemp("digits16") / "tree"
    write_digits_imagefolder(root, size=16)
    return root


def _env(**extra):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env.update(extra)
    return env


def test_shards_are_disjoint_and_cover_the_epoch(digits16):
    from convattn.data import resolve_data_cfg
    from convattn.engine.config import validate
    from convattn.engine.trainer import build_loaders
    from convattn.models import get_model_cfg
    cfg = validate(dict(CFG, data_dir=str(digits16), batch_size=1, drop_remainder=False))  # shuffle on (default)
    data_cfg = resolve_data_cfg(cfg, get_model_cfg(cfg.model))

    def epoch(rank, size):
        make_train, _, _ = build_loaders(cfg, data_cfg, rank, size)
        return [x.tobytes() + y.tobytes() for x, y in make_train(3).create_tuple_iterator(num_epochs=1,
                                                                                           output_numpy=True)]
    full, r0, r1 = epoch(0, 1), epoch(0, 2), epoch(1, 2)
    assert len(full) == len(set(full)) == 1438 and len(r0) == len(r1) == 719
    assert not set(r0) & set(r1)
    assert sorted(r0 + r1) == sorted(full)


def test_two_nodes_step_equals_one_process_step_over_both_batches(digits16, tmp_path):
    if not (shutil.which("msrun") or Path(sys.executable).with_name("msrun").exists()):
        pytest.skip("msrun (part of the mindspore wheel) not found next to the Python interpreter")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(CFG, shuffle=False)))
    # on one machine both msrun invocations would see the master address as their own and start a scheduler;
    # node 1 gets an msrun that treats the master address as remote, as it is on a real second node
    shim = tmp_path / "node1_bin" / "msrun"
    shim.parent.mkdir()
    shim.write_text(f"#!{sys.executable}\nimport sys\nfrom mindspore.parallel.cluster.process_entity import _api\n"
                    "_api._is_local_ip = lambda addr: False\nfrom mindspore.parallel.cluster.run import main\n"
                    "sys.exit(main())\n")
    shim.chmod(0o755)
    port = str(_free_port())
    extra = ["--ckpt_dir", str(tmp_path / "dp"), "--max_steps_per_epoch", "1"]
    procs = []
    for node in (0, 1):
        env = _env(LOG_DIR=str(tmp_path / f"log{node}"))
        if node == 1:
            env["PATH"] = str(shim.parent) + os.pathsep + env["PATH"]
        procs.append(subprocess.Popen(["bash", str(LAUNCHER), str(config), str(digits16), "1", "CPU", "2", str(node),
                                       "127.0.0.1", port] + extra, cwd=str(tmp_path), env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [p.communicate(timeout=400)[0] for p in procs]
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("log*/worker_*.log"))
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs) + logs[-4000:]
    assert "msrun --worker_num=2 --local_worker_num=1 --node_rank=1 --master_addr=127.0.0.1" in outs[1]
    assert (tmp_path / "log0" / "worker_0.log").is_file() and (tmp_path / "log1" / "worker_1.log").is_file()
    assert "on CPU x2:" in logs and "global batch 16 = 8 per device x 2 devices x 1 accumulation step" in logs
    digests = dict(re.findall(r"\[rank (\d)\] final weights sha256 ([0-9a-f]{64})", logs))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], logs[-3000:]
    # the same step in one process over the 16 images both ranks read (unshuffled shards interleave: rank r holds
    # samples r, r+2, ..., so the two first batches of 8 are the first 16 samples)
    from convattn.engine.config import validate
    from convattn.engine.trainer import train
    train(validate(dict(CFG, shuffle=False, data_dir=str(digits16), batch_size=16, max_steps_per_epoch=1,
                        ckpt_dir=str(tmp_path / "one"))))
    import mindspore as ms
    dp, one = (ms.load_checkpoint(str(tmp_path / d / "deit_tiny-1_1.ckpt")) for d in ("dp", "one"))
    names = [k for k in one if not k.startswith(("train.", "learning_rate", "global_step"))]  # moments: the gradient
    moved = 0.0
    for k in names:
        np.testing.assert_allclose(dp[k].asnumpy(), one[k].asnumpy(), rtol=0, atol=1e-5, err_msg=k)
        moved = max(moved, float(np.abs(one["moments." + k].asnumpy()).max())) if "moments." + k in one else moved
    assert moved > 1e-3  # the step did move the weights


def _launch(*args, env=None):
    return subprocess.run(["bash", str(LAUNCHER)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, env=_env(**(env or {})), cwd=str(REPO))


def test_launcher_bad_input_fails_before_starting(digits16, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CFG))
    base = [config, digits16, 1, "CPU"]
    for args, env, needle in [
        (base + [2, 2, "10.0.0.1"], None, "NODE_RANK must be an integer in [0, NODE_NUM) = [0, 2), got '2'"),
        (base + [2, -1, "10.0.0.1"], None, "NODE_RANK must be an integer in [0, NODE_NUM)"),
        (base, {"NODE_NUM": "2", "NODE_RANK": "3", "MASTER_ADDR": "10.0.0.1"}, "NODE_RANK must be"),
        (base + [2, 1], None, "MASTER_ADDR is required when NODE_NUM > 1"),
        (base + [2, 0, "10.0.0.1", 70000], None, "MASTER_PORT must be a port number"),
        ([config, digits16, 0, "CPU"], None, "DEVICE_NUM must be a positive integer"),
        (base + ["--accumulation_steps", 0], None, "'accumulation_steps' must be > 0"),
    ]:
        r = _launch(*args, env=dict(env or {}, DRY_RUN="1"))
        assert r.returncode != 0 and needle in r.stderr, (args, r.stdout, r.stderr)
        assert "msrun --worker_num" not in r.stdout
    # one node (the default): local workers = all workers, master 127.0.0.1; overrides reach train.py
    ok = _launch(config, digits16, 2, "CPU", "--accumulation_steps", 2, env={"DRY_RUN": "1"})
    assert ok.returncode == 0, ok.stderr
    assert ("msrun --worker_num=2 --local_worker_num=2 --node_rank=0 --master_addr=127.0.0.1 --master_port=8118"
            in ok.stdout) and ok.stdout.rstrip().endswith("--distribute true --accumulation_steps 2")
