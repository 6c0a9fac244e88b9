"""Read an Ascend rank table (HCCL JSON, ``server_list[].device[]``) and pick this server's devices.

Run as a file (no package import, no MindSpore) by ``scripts/run_distribute_train_ascend.sh``::

    python ranktable.py RANK_TABLE_FILE [SERVER_ID]

prints ``RANK_SIZE <n>``, ``SERVER <server_id> <index>`` and one ``DEVICE <device_id> <rank_id>`` line per local
device, or an ``error: ...`` line on stderr and exit code 2. The local server is the one whose ``server_id`` (or
``host_ip``) is an address of this machine, unless SERVER_ID (a ``server_id`` value or a 0-based index into
``server_list``) names it.
"""
import json
import os
import socket
import subprocess
import sys
from typing import Iterable, List, Optional, Set, Tuple

__all__ = ["RankTableError", "local_addresses", "read_rank_table", "select_server"]


class RankTableError(ValueError):
    """A rank table that cannot be used here; the message names the problem and the fix."""


def local_addresses() -> Set[str]:
    """IP addresses of this machine (``ip -j addr``, the host name's addresses, loopback)."""
    addrs = {"127.0.0.1", "::1"}
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=10).stdout
        for iface in json.loads(out or "[]"):
            for info in iface.get("addr_info", []):
                if info.get("local"):
                    addrs.add(info["local"])
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    try:
        addrs.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return addrs


def _int(value, what: str, where: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise RankTableError(f"{where}: {what} {value!r} is not an integer") from None


def read_rank_table(path: str) -> List[Tuple[str, Optional[str], List[Tuple[int, int]]]]:
    """-> [(server_id, host_ip, [(device_id, rank_id), ...])] in table order, checked for consistency."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            table = json.load(f)
    except OSError as exc:
        raise RankTableError(f"RANK_TABLE_FILE {path}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise RankTableError(f"RANK_TABLE_FILE {path} is not JSON ({exc})") from None
    servers = table.get("server_list") if isinstance(table, dict) else None
    if not isinstance(servers, list) or not servers:
        raise RankTableError(f"RANK_TABLE_FILE {path} has no server_list (expected the HCCL rank-table format "
                             "{\"server_list\": [{\"server_id\": ..., \"device\": [{\"device_id\", \"rank_id\"}]}]})")
    out, ranks = [], []
    for i, server in enumerate(servers):
        where = f"RANK_TABLE_FILE {path}, server_list[{i}]"
        if "server_id" not in server or not isinstance(server.get("device"), list) or not server["device"]:
            raise RankTableError(f"{where} needs a server_id and a non-empty device list")
        devices = [(_int(d.get("device_id"), "device_id", where), _int(d.get("rank_id"), "rank_id", where))
                   for d in server["device"]]
        ids = [d for d, _ in devices]
        if len(set(ids)) != len(ids):
            raise RankTableError(f"{where} lists a device_id twice: {ids}")
        out.append((str(server["server_id"]), server.get("host_ip"), devices))
        ranks += [r for _, r in devices]
    if sorted(ranks) != list(range(len(ranks))):
        raise RankTableError(f"RANK_TABLE_FILE {path}: the rank_ids {sorted(ranks)} are not 0 .. {len(ranks) - 1}, "
                             "each once")
    return out


def select_server(servers, server_id: Optional[str] = None, addresses: Optional[Iterable[str]] = None):
    """-> (index, server_id, devices) of the local server: the one SERVER_ID names, else the one whose address
    is local. Raises :class:`RankTableError` when none (or several) match."""
    ids = [s[0] for s in servers]
    if server_id:
        for i, (sid, _, devices) in enumerate(servers):
            if sid == server_id:
                return i, sid, devices
        if server_id.isdigit() and int(server_id) < len(servers):
            i = int(server_id)
            return i, servers[i][0], servers[i][2]
        raise RankTableError(f"SERVER_ID {server_id!r} is neither a server_id of the rank table {ids} nor an index "
                             f"0..{len(servers) - 1}")
    local = set(local_addresses() if addresses is None else addresses)
    hits = [i for i, (sid, host, _) in enumerate(servers) if sid in local or (host and host in local)]
    if not hits:
        raise RankTableError(f"the rank table has no server with an address of this machine (table servers {ids}, "
                             f"local addresses {sorted(local)}); run on one of those servers or pass SERVER_ID "
                             "(its server_id or index)")
    if len(hits) > 1:
        raise RankTableError(f"several servers of the rank table ({[ids[i] for i in hits]}) have addresses of this "
                             "machine; pass SERVER_ID to say which one this is")
    i = hits[0]
    return i, servers[i][0], servers[i][2]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print("usage: python ranktable.py RANK_TABLE_FILE [SERVER_ID]", file=sys.stderr)
        return 2
    try:
        servers = read_rank_table(argv[0])
        index, sid, devices = select_server(servers, argv[1] if len(argv) > 1 else os.environ.get("SERVER_ID"))
    except RankTableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"RANK_SIZE {sum(len(s[2]) for s in servers)}")
    print(f"SERVER {sid} {index}")
    for device_id, rank_id in devices:
        print(f"DEVICE {device_id} {rank_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
