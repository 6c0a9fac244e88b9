"""Rank-table launcher per server: each server of a generated two-server table starts only its own devices, with
the table's device_id / rank_id and RANK_SIZE = the whole table; tables without this server are refused."""
import json
import os
import re
import subprocess
import sys

import pytest

from engine_helpers import REPO
from convattn.engine.ranktable import RankTableError, read_rank_table, select_server

LAUNCHER = REPO / "scripts" / "run_distribute_train_ascend.sh"
# server 1 lists its devices out of order, with rank ids that do not follow device ids
SERVERS = [("10.255.0.1", [(d, d) for d in range(8)]),
           ("10.255.0.2", [(7, 8), (6, 9), (5, 10), (4, 11), (3, 12), (2, 13), (1, 14), (0, 15)])]


def _table(path, servers=SERVERS):
    path.write_text(json.dumps({"version": "1.0", "server_count": str(len(servers)), "status": "completed",
                                "server_list": [{"server_id": sid, "host_nic_ip": "reserve", "device": [
                                    {"device_id": str(d), "device_ip": f"192.98.{i}.{d}", "rank_id": str(r)}
                                    for d, r in devices]} for i, (sid, devices) in enumerate(servers)]}))
    return path


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "c.yaml").write_text("dataset: digits\nnum_classes: 10\nmodel: van_b0\nbatch_size: 8\n")
    return _table(tmp_path / "table.json"), tmp_path / "c.yaml", tmp_path / "data"


def _launch(args, env=None, cwd=None):
    full = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    full.update(env or {})
    return subprocess.run(["bash", str(LAUNCHER)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, env=full, cwd=str(cwd or REPO))


def test_dry_run_starts_each_servers_own_devices(inputs, tmp_path):
    table, cfg, data = inputs
    runs = {0: _launch(["--dry_run", table, cfg, data, "10.255.0.1", "--accumulation_steps", "4"], cwd=tmp_path),
            1: _launch([table, cfg, data], env={"DRY_RUN": "1", "SERVER_ID": "10.255.0.2"}, cwd=tmp_path)}
    for index, r in runs.items():
        assert r.returncode == 0, r.stdout + r.stderr
        lines = [line for line in r.stdout.splitlines() if line.startswith("[dry-run]")]
        got = [tuple(int(v) for v in re.search(r"RANK_ID=(\d+) DEVICE_ID=(\d+)", line).groups()[::-1]) for line in lines]
        assert got == SERVERS[index][1]  # (device_id, rank_id) as the table gives them, only this server's
        for line in lines:
            assert "RANK_SIZE=16 " in line and f"RANK_TABLE_FILE={table} " in line
            assert f"SERVER_ID={SERVERS[index][0]} " in line and "--device_target Ascend --distribute true" in line
            rank = re.search(r"RANK_ID=(\d+)", line).group(1)
            assert f"cwd={tmp_path}/train_parallel{rank} " in line
        assert f"server {SERVERS[index][0]} (index {index}): 8 of 16 devices" in r.stdout
    assert "--accumulation_steps 4" in runs[0].stdout
    assert not list(tmp_path.glob("train_parallel*"))  # a dry run creates nothing


def test_local_server_found_by_address(tmp_path):
    servers = read_rank_table(str(_table(tmp_path / "t.json")))
    assert select_server(servers, addresses={"10.255.0.2", "127.0.0.1"})[:2] == (1, "10.255.0.2")
    assert select_server(servers, "0", addresses=set())[:2] == (0, "10.255.0.1")
    with pytest.raises(RankTableError, match="no server with an address of this machine"):
        select_server(servers, addresses={"192.0.2.9"})
    with pytest.raises(RankTableError, match="SERVER_ID '10.9.9.9' is neither"):
        select_server(servers, "10.9.9.9")


def test_bad_tables_and_servers_refused_before_starting(inputs, tmp_path):
    table, cfg, data = inputs
    dup = _table(tmp_path / "dup.json", [("10.255.0.1", [(0, 0), (1, 1)]), ("10.255.0.2", [(0, 1), (1, 2)])])
    for args, env, needle in [
        ([table, cfg, data], None, "no server with an address of this machine"),  # neither server is this machine
        ([table, cfg, data, "10.255.0.3"], None, "SERVER_ID '10.255.0.3' is neither a server_id"),
        ([dup, cfg, data, "0"], None, "rank_ids [0, 1, 1, 2] are not 0 .. 3"),
        ([tmp_path / "none.json", cfg, data], None, "RANK_TABLE_FILE"),
        ([table, cfg, data, "0", "--accumulation_steps", "0"], None, "'accumulation_steps' must be > 0"),
    ]:
        r = _launch(args, env=dict(env or {}, SERVER_ID="", DRY_RUN="1"), cwd=tmp_path)
        assert r.returncode != 0 and needle in r.stderr, (args, r.stdout, r.stderr)
        assert "[dry-run]" not in r.stdout and "rank " not in r.stdout
    assert not list(tmp_path.glob("train_parallel*"))
