"""2-worker data-parallel training with msrun on 127.0.0.1: both ranks end with identical weights."""
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import REPO, cli_args


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_msrun_two_workers_identical_weights(tmp_path):
    msrun = shutil.which("msrun") or str(Path(sys.executable).with_name("msrun"))
    if not os.path.exists(msrun):
        pytest.skip("msrun (part of the mindspore wheel) not found next to the Python interpreter")
    from convattn.data import write_digits_imagefolder
    write_digits_imagefolder(tmp_path / "digits", size=16)
    log_dir = tmp_path / "msrun_log"
    cmd = [msrun, "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "--join=True", "--cluster_time_out=120", f"--log_dir={log_dir}",
           str(REPO / "scripts" / "train.py")] + cli_args(
        data_dir=tmp_path / "digits", ckpt_dir=tmp_path / "out", epochs=1, max_steps_per_epoch=3, distribute="true",
        batch_size=8)
    r = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]))
    logs = {p.name: p.read_text(errors="replace") for p in log_dir.glob("*.log")}
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + "".join(v[-2000:] for v in logs.values())
    text = "".join(logs.values())
    digests = dict(re.findall(r"\[rank (\d)\] final weights sha256 ([0-9a-f]{64})", text))
    assert set(digests) == {"0", "1"}, text[-3000:]
    assert digests["0"] == digests["1"]
    assert "x2:" in text and "global batch 16" in text  # global batch = per-device batch x devices
    assert (tmp_path / "out" / "van_b0-1_3.ckpt").is_file()
