"""Official weight files on disk: downloaded once, verified, kept in a cache, found again without the network.

Layout under ``$CONVATTN_HOME`` (default ``~/.cache/convattn``)::

    official/<file>            the official file, under its published name (the registry's ``weights['file']``)
    official/<file>.json       its sha256 and size as verified, and where it came from
    converted/<model>-<sha256[:16]>-conv<N>.ckpt   the MindSpore checkpoint made from it (see :mod:`.pretrained`)

A download streams into a temporary ``.part`` file in ``official/`` with the sha256 computed on the way, and is
renamed into place only when the hash matches the registry's (the full sha256 where published, else the 8-hex
prefix the file name carries, else the bytes are not checked -- the converter still checks every tensor); a
mismatch or a dropped connection leaves nothing behind. Two processes fetching the same file take turns on a lock
(``filelock``; the lock files live in the system's temporary folder, never in the cache), so the second finds the
first one's file: one download; the same holds for the conversion. The transfer itself is pooch's
:class:`pooch.HTTPDownloader` (requests streaming, HTTP errors, the tqdm progress bar); pooch's own cache
(``pooch.retrieve``) is not used because it cannot check an 8-hex prefix before the rename, try a list of URLs, or
serialise processes, and it hashes only after writing.

Environment: ``CONVATTN_HOME`` (the cache), ``CONVATTN_WEIGHTS_MIRROR`` (a base URL: every file is fetched from
base URL + its file name, and only from there), ``CONVATTN_OFFLINE=1`` (never touch the network: a file not in
the cache is an error saying where to put it).
"""
import contextlib
import getpass
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from urllib.parse import quote

from ..models.helpers import WeightsError
from ..models.registry import weights_entry

__all__ = ["ENV_HOME", "ENV_MIRROR", "ENV_OFFLINE", "cache_home", "official_path", "is_offline", "download_urls",
           "released_entry", "fetch_official", "file_sha256", "recorded_sha256", "locked", "lock_path", "say",
           "WeightsError", "WeightsNotReleasedError", "WeightsManualError", "WeightsUnavailableError",
           "WeightsHashError"]

ENV_HOME = "CONVATTN_HOME"
ENV_MIRROR = "CONVATTN_WEIGHTS_MIRROR"
ENV_OFFLINE = "CONVATTN_OFFLINE"
CONNECT_TIMEOUT_S = 15
READ_TIMEOUT_S = 60  # between two reads of the stream, not for the whole file
_CHUNK = 1 << 20


class WeightsNotReleasedError(WeightsError):
    """The model's official weights were never released."""


class WeightsManualError(WeightsError):
    """The official weights sit behind a link a script cannot follow; the message gives it and the commands."""


class WeightsUnavailableError(WeightsError):
    """Offline with an empty cache, or every URL failed; the message names the file, URLs, sha256 and cache path."""


class WeightsHashError(WeightsError):
    """The bytes do not have the registered sha256 (or its prefix); nothing was kept."""


def say(msg: str) -> None:
    print(f"[convattn] {msg}", file=sys.stderr, flush=True)


def cache_home() -> Path:
    """``$CONVATTN_HOME``, default ``~/.cache/convattn``."""
    return Path(os.environ.get(ENV_HOME) or "~/.cache/convattn").expanduser()


def official_path(entry: dict) -> Path:
    return cache_home() / "official" / entry["file"]


def is_offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def download_urls(entry: dict) -> List[str]:
    """Where the file is fetched from, in order: ``$CONVATTN_WEIGHTS_MIRROR`` + file name when set (and nothing
    else), else the registry's URLs (official first, mirrors after)."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if mirror:
        if not mirror.startswith(("http://", "https://")):
            raise WeightsError(f"{ENV_MIRROR}={mirror!r} is not an http(s) base URL (for files on this machine, put "
                               f"them in the cache instead: {cache_home() / 'official'})")
        return [mirror.rstrip("/") + "/" + quote(entry["file"])]
    return list(entry["urls"])


def _hash_text(entry: dict) -> str:
    if entry.get("sha256"):
        return f"sha256 {entry['sha256']}"
    if entry.get("sha256_prefix"):
        return f"sha256 starting {entry['sha256_prefix']} (the prefix in the file name; no full hash is published)"
    return "sha256: none published (the file is checked only by the converter reading it)"


def _hash_ok(entry: dict, actual: str) -> bool:
    if entry.get("sha256"):
        return actual == entry["sha256"]
    if entry.get("sha256_prefix"):
        return actual.startswith(entry["sha256_prefix"])
    return True


def _expected(entry: dict) -> str:
    return entry.get("sha256") or (f"{entry['sha256_prefix']}..." if entry.get("sha256_prefix") else "none")


def released_entry(name: str) -> dict:
    """The ``weights`` entry of ``name`` when its official weights can be downloaded; a manual-only or never
    released model fails here, saying so (never a silent random initialisation)."""
    entry = weights_entry(name)
    if entry["status"] == "unreleased":
        raise WeightsNotReleasedError(
            f"{name} has no official pretrained weights: never released ({entry['reason']}). Build it without "
            "pretrained=True (random "
            "initialisation) and train it, or pass your own checkpoint as pretrained='file.ckpt' / 'file.pth'.")
    if entry["status"] == "manual":
        raise WeightsManualError(
            f"{name}'s official weights (top-1 {entry['top1']}) are only behind a link a script cannot follow:\n"
            f"  {entry['manual']}\n"
            f"Download {name}'s file from there ({entry['container']}), then either\n"
            f"  python -m convattn.convert --model {name} DOWNLOADED.pth {name}.ckpt\n"
            f"  python -c \"import convattn; convattn.create_model('{name}', pretrained='{name}.ckpt')\"\n"
            f"or pass the downloaded file directly: create_model('{name}', pretrained='DOWNLOADED.pth').")
    return entry


def _where(name: str, entry: dict, dest: Path, urls: List[str]) -> str:
    shown = "\n".join(f"    {u}" for u in urls)
    return (f"  file:   {entry['file']}\n  URL(s):\n{shown}\n  {_hash_text(entry)}\n"
            f"  put the file at: {dest}\n"
            f"  (it is verified and converted on the next create_model('{name}', pretrained=True))")


class _HashingWriter:
    """What pooch's downloader writes to: the temporary file, with the sha256 and size kept on the way."""

    def __init__(self, f):
        self.f, self.digest, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:  # pooch flushes after every chunk; the file is flushed once at the end
        pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".json")


def _write_sidecar(dest: Path, sha: str, source: str) -> None:
    info = {"file": dest.name, "sha256": sha, "size": dest.stat().st_size, "source": source,
            "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".json.tmp", dir=dest.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, _sidecar(dest))


def recorded_sha256(dest: Path) -> Optional[str]:
    """The sha256 recorded when ``dest`` was verified, if the record still describes the file (same size)."""
    try:
        info = json.loads(_sidecar(dest).read_text())
        if info.get("size") == dest.stat().st_size and isinstance(info.get("sha256"), str):
            return info["sha256"]
    except (OSError, ValueError):
        pass
    return None


def lock_path(path: Path) -> Path:
    """The lock file of cache entry ``path``: in this user's folder of the system's temporary directory, named by
    the entry's absolute path, so that the cache itself never holds anything but finished files (a Unix lock file
    cannot be removed safely on release)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"convattn-locks-{user}" / f"{path.name}-{key}.lock"


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold the inter-process lock of cache entry ``path`` (:func:`lock_path`); the first holder works, the others
    wait, saying so, and then find its result."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = lock_path(path)
    lock_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"waiting for another process that is preparing {what} ({path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _cached(name: str, entry: dict, dest: Path) -> Optional[str]:
    """The sha256 of the cached file, checked against the registry; a file without a valid record (put there by
    hand) is hashed and recorded first. None when the file is not there."""
    if not dest.exists():
        return None
    sha = recorded_sha256(dest)
    if sha is None:
        sha = file_sha256(dest)
        if _hash_ok(entry, sha):
            _write_sidecar(dest, sha, "found in the cache")
    if not _hash_ok(entry, sha):
        raise WeightsHashError(
            f"{name}: the cached file {dest} does not have the registered hash: expected {_expected(entry)}, "
            f"got {sha}. Delete it (or put the right file there) and call again.")
    return sha


def _download(url: str, dest: Path, entry: dict, progress: bool) -> str:
    """Stream ``url`` into a temporary file beside ``dest``; rename it into place when its hash (and published size)
    match; return the sha256. Raises WeightsHashError (nothing kept) or the transfer's exception (nothing kept)."""
    import pooch

    fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _HashingWriter(f)
            pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK,
                                 timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))(url, writer, None)
            f.flush()
            os.fsync(f.fileno())
        actual = writer.digest.hexdigest()
        if not _hash_ok(entry, actual):
            raise WeightsHashError(
                f"{entry['file']} from {url} has the wrong sha256: expected {_expected(entry)}, got {actual} "
                f"({writer.size} bytes). The download was deleted; nothing was kept.")
        if entry.get("size") and writer.size != entry["size"]:
            raise WeightsHashError(f"{entry['file']} from {url} has {writer.size} bytes, the published size is "
                                   f"{entry['size']}. The download was deleted; nothing was kept.")
        os.replace(part, dest)
        _write_sidecar(dest, actual, url)
        return actual
    finally:
        if os.path.exists(part):
            os.remove(part)


def _progress_bar() -> bool:
    if not sys.stderr.isatty():
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def fetch_official(name: str, progress: Optional[bool] = None) -> Tuple[Path, str]:
    """The official weights file of registered model ``name`` in the cache, downloaded and verified on first use.

    Returns ``(path, sha256)``. Raises :class:`WeightsNotReleasedError` / :class:`WeightsManualError` for a model
    without downloadable weights, :class:`WeightsUnavailableError` offline with an empty cache or when every URL
    fails, :class:`WeightsHashError` when the bytes are not the registered ones (nothing is kept).
    ``progress``: show a progress bar (default: when stderr is a terminal and tqdm is installed).
    """
    entry = released_entry(name)
    dest = official_path(entry)
    sha = recorded_sha256(dest) if dest.exists() else None
    if sha is not None and _hash_ok(entry, sha):  # the common case: verified before, nothing to lock
        return dest, sha
    if dest.exists():
        with locked(dest, f"{name}'s weights"):
            return dest, _cached(name, entry, dest)
    urls = download_urls(entry)
    if is_offline():
        raise WeightsUnavailableError(
            f"{name}: its official weights are not in the cache and {ENV_OFFLINE}=1 forbids downloading them.\n"
            + _where(name, entry, dest, urls))
    progress = _progress_bar() if progress is None else progress
    with locked(dest, f"{name}'s weights"):
        sha = _cached(name, entry, dest)  # another process fetched it while this one waited
        if sha is not None:
            return dest, sha
        failures, mismatches = [], []
        for url in urls:
            say(f"downloading {name}'s official weights {entry['file']} from {url} to {dest}")
            try:
                return dest, _download(url, dest, entry, progress)
            except WeightsHashError as exc:
                mismatches.append(str(exc))
            except Exception as exc:  # requests' errors, OSError, an HTTP status: this URL failed, try the next
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                failures.append(f"{url}: {type(exc).__name__}: {first}")
    if mismatches:
        raise WeightsHashError(f"{name}: " + "\n".join(mismatches + failures))
    raise WeightsUnavailableError(
        f"{name}: could not download its official weights:\n" + "\n".join(f"  {f}" for f in failures) + "\n"
        + _where(name, entry, dest, urls))
