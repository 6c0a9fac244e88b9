"""The CPU backend's kernel runtime: one object per process owns the compiled kernel library.

:func:`runtime` returns the process's :class:`KernelRuntime`, set up on the first call and never raising: either
``available`` (the library built, loaded, self-tested and initialised) or not, with ``reason`` saying why in one
line. The fused cells of :mod:`convattn.cpu` are only built while it is available, so a failure shows at network
construction (the standard cells are built instead), never at the first forward.

* Source ``kernels/*.cc`` with the one header ``kernels/common.h``, compiled with ``$CXX`` (default ``g++``, GCC 9
  or newer; an older GCC is refused with the reason ``needs GCC >= 9, found X``) into one shared library in
  ``$CONVATTN_KERNEL_CACHE`` (default ``~/.cache/convattn/kernels``). Its file name carries a key of the sources,
  the flags, the compiler's identity (``--version``, ``-dumpmachine``, ``-dumpfullversion``) and the machine's
  architecture, so one build serves every process and virtual environment with the same compiler and sources.
* The build runs under an ``fcntl`` lock on ``<library>.lock`` in the cache: N processes starting on a cold cache
  compile once, the others wait and load the result.
* A library is declared available only after it loaded with ``ctypes`` and passed its self-test
  (``convattn_selftest()`` through the thread pool, and ``convattn_build_key()`` equal to the key). A cached file
  that fails (junk, truncated, another build) is rebuilt once; if the rebuilt one fails too the runtime is
  unavailable with the reason.
* ``ctypes`` and MindSpore's ``ops.Custom`` load the same path into one handle, so what :meth:`KernelRuntime.init`
  sets (``convattn_init``: the GEMM entry point of :mod:`convattn.cpu.gemm` and the thread count) is what the
  kernels see. No environment variable is set or passed to the library.
* Threads: :func:`set_threads` (or ``runtime().set_threads(n)``) sets the kernels' thread count; the engine and the
  benchmark call it with the count they give MindSpore (``ms.device_context.cpu.op_tuning.threads_num``, which
  MindSpore 2.10 does not let anyone read back). Default: the CPUs this process may run on (its affinity, read at
  each kernel call), capped by ``CONVATTN_NUM_THREADS`` where that is set.
* ``CONVATTN_FUSED_KERNELS=0`` turns the backend off (:func:`backend_enabled`); nothing is built or loaded then.
"""
import ctypes
import fcntl
import hashlib
import os
import platform
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .._env import cpu_flags  # the one /proc/cpuinfo reader (re-exported here for the backend)

__all__ = ["KernelRuntime", "runtime", "set_threads", "backend_enabled", "cache_dir", "cpu_flags", "KERNEL_DIR",
           "MIN_GCC", "SELFTEST_VALUE", "FileLock", "unload_library"]

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
BACKEND_VAR = "CONVATTN_FUSED_KERNELS"
THREADS_VAR = "CONVATTN_NUM_THREADS"
MIN_GCC = 9
SELFTEST_VALUE = 499500.0  # convattn_selftest(): sum of i for i < 1000, through the thread pool
LIBRARY_PREFIX = "convattn_kernels_"
_COMPILE_TIMEOUT_S = 600


def backend_enabled() -> bool:
    """False when ``CONVATTN_FUSED_KERNELS`` turns the CPU backend off (``0``, ``false``, ``off``, ``no``)."""
    return os.environ.get(BACKEND_VAR, "1").strip().lower() not in ("0", "false", "off", "no")



def cache_dir() -> str:
    return os.environ.get("CONVATTN_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "convattn",
                                                                    "kernels")


class RuntimeUnavailable(Exception):
    """Why the runtime cannot be had (one line); caught in :func:`runtime`."""


@dataclass
class KernelRuntime:
    """What the backend has: ``path`` of the loaded kernel library (None when unavailable), ``reason`` (why not,
    one line), ``gemm`` (the AVX-512 GEMM is ready: the fused Dense, convolution and softmax-attention kernels
    need it) with ``gemm_reason`` (why not) and ``gemm_path`` (the library it comes from), ``threads`` (the
    threads the kernels use now), ``key`` (the build key in the library's name) and ``info`` (compiler identity,
    GEMM details)."""
    path: Optional[str] = None
    reason: Optional[str] = None
    gemm: bool = False
    gemm_reason: Optional[str] = None
    threads: int = 1
    info: dict = field(default_factory=dict)
    key: Optional[str] = None
    gemm_path: Optional[str] = None
    lib: Any = field(default=None, repr=False, compare=False)  # the ctypes handle (kept loaded)
    gemm_handle: Any = field(default=None, repr=False, compare=False)

    @property
    def available(self) -> bool:
        return self.path is not None

    def set_threads(self, n: Optional[int] = None) -> int:
        """Sets the kernels' thread count: ``n >= 1`` that many (at most 64), ``None`` or ``0`` the CPUs this
        process may run on. Returns the count in force (``threads``); a no-op returning 1 when unavailable."""
        if self.lib is None:
            return self.threads
        self.lib.convattn_set_threads(int(n or 0))
        self.threads = int(self.lib.convattn_get_threads())
        return self.threads

    def pool_workers(self) -> int:
        """Worker threads the library's pool holds now (the calling thread is not one; 0 before the first job)."""
        return int(self.lib.convattn_pool_workers()) if self.lib is not None else 0

    def last_error(self) -> Optional[str]:
        """The last refusal of a kernel (``"linear: x has 3 dims, expected 2"``), or None."""
        if self.lib is None:
            return None
        text = self.lib.convattn_last_error()
        return text.decode(errors="replace") if text else None

    def clear_error(self) -> None:
        if self.lib is not None:
            self.lib.convattn_clear_error()


_RUNTIME: Optional[KernelRuntime] = None


def runtime() -> KernelRuntime:
    """The process's kernel runtime (built, loaded and initialised on the first call; never raises)."""
    global _RUNTIME
    if _RUNTIME is None:
        try:
            _RUNTIME = _setup()
        except Exception as exc:  # never raise: the fused cells fall back to the standard ones
            _RUNTIME = KernelRuntime(reason=_one_line(f"{type(exc).__name__}: {exc}"))
    return _RUNTIME


def set_threads(n: Optional[int] = None) -> int:
    """``runtime().set_threads(n)``: the kernels' thread count (None or 0: the process's CPUs)."""
    return runtime().set_threads(n)


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else "unknown error"


# ---- compiler ----

def _compiler() -> List[str]:
    cmd = shlex.split(os.environ.get("CXX", "g++"))
    if not cmd:
        raise RuntimeUnavailable("CXX is empty")
    return cmd


def _ask(cmd: List[str], *args: str) -> str:
    try:
        done = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeUnavailable(f"compiler {' '.join(cmd)!r} cannot run: {_one_line(exc)}") from None
    if done.returncode != 0 or not done.stdout.strip():
        why = _one_line(done.stderr) if done.stderr.strip() else f"exit status {done.returncode}"
        raise RuntimeUnavailable(f"compiler {' '.join(cmd)!r} failed on {' '.join(args)}: {why}")
    return done.stdout.strip()


def compiler_identity(cmd: List[str]) -> dict:
    """``version_line`` (first line of ``--version``), ``machine`` (``-dumpmachine``), ``version``
    (``-dumpfullversion -dumpversion``) and ``gcc`` (False for clang); RuntimeUnavailable for a compiler that
    cannot answer, or a GCC older than 9."""
    version_line = _ask(cmd, "--version").splitlines()[0].strip()
    machine = _ask(cmd, "-dumpmachine").splitlines()[0].strip()
    clang = "clang" in version_line.lower()
    try:
        version = _ask(cmd, "-dumpfullversion", "-dumpversion").splitlines()[0].strip()
    except RuntimeUnavailable:
        if not clang:
            raise
        version = _ask(cmd, "-dumpversion").splitlines()[0].strip()
    if not clang:
        major = re.match(r"\s*(\d+)", version)
        if major is None or int(major.group(1)) < MIN_GCC:
            raise RuntimeUnavailable(f"needs GCC >= {MIN_GCC}, found {version} ({' '.join(cmd)})")
    return {"version_line": version_line, "machine": machine, "version": version, "gcc": not clang}


def _compile_flags() -> List[str]:
    flags = ["-std=c++17", "-O3", "-shared", "-fPIC", "-pthread", "-fvisibility=hidden", "-fno-math-errno",
             "-fno-trapping-math"]
    if {"avx2", "fma"} <= cpu_flags():
        flags += ["-mavx2", "-mfma"]
    return flags


def _sources() -> List[str]:
    names = sorted(f for f in os.listdir(KERNEL_DIR) if f.endswith((".cc", ".h")))
    if not any(n.endswith(".cc") for n in names):
        raise RuntimeUnavailable(f"no kernel sources in {KERNEL_DIR}")
    return [os.path.join(KERNEL_DIR, n) for n in names]


def build_key(sources: List[str], flags: List[str], identity: dict) -> str:
    digest = hashlib.sha256()
    for s in sources:
        with open(s, "rb") as f:
            content = f.read()
        digest.update(f"{os.path.basename(s)}\0{len(content)}\0".encode())
        digest.update(content)
    digest.update("\0".join(flags).encode())
    digest.update("\0".join([identity["version_line"], identity["machine"], identity["version"],
                             platform.machine()]).encode())
    return digest.hexdigest()[:16]


def _compile(cmd: List[str], sources: List[str], target: str, flags: List[str], key: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".build_", suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    try:
        full = cmd + flags + [f'-DCONVATTN_BUILD_KEY="{key}"', "-o", tmp] + [s for s in sources if s.endswith(".cc")]
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeUnavailable(f"compiling the kernels failed: {_one_line(exc)}") from None
        if done.returncode != 0:
            errors = [ln for ln in done.stderr.splitlines() if "error" in ln] or done.stderr.splitlines() or [""]
            raise RuntimeUnavailable(f"compiling the kernels failed ({' '.join(cmd)}): {errors[0].strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---- loading ----

def _declare(lib) -> None:
    lib.convattn_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.convattn_init.restype = ctypes.c_int
    lib.convattn_set_threads.argtypes = [ctypes.c_int]
    lib.convattn_set_threads.restype = ctypes.c_int
    lib.convattn_get_threads.restype = ctypes.c_int
    lib.convattn_pool_workers.restype = ctypes.c_int
    lib.convattn_last_error.restype = ctypes.c_char_p
    lib.convattn_clear_error.restype = None
    lib.convattn_selftest.restype = ctypes.c_double
    lib.convattn_build_key.restype = ctypes.c_char_p


def unload_library(lib) -> None:
    try:
        import _ctypes
        _ctypes.dlclose(lib._handle)
    except (ImportError, AttributeError, OSError):
        pass


def _load_checked(path: str, key: str) -> Tuple[Any, Optional[str]]:
    """(the loaded, self-tested library, None), or (None, why not). A library that loaded but failed is unloaded
    again, so that a rebuilt file at the same path is really loaded anew."""
    if not os.path.exists(path):
        return None, "not built"
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as exc:
        return None, f"cannot be loaded: {_one_line(exc)}"
    try:
        _declare(lib)
        found = lib.convattn_build_key().decode(errors="replace")
        if found != key:
            raise OSError(f"its build key is {found!r}, expected {key!r}")
        value = lib.convattn_selftest()
        if value != SELFTEST_VALUE:
            raise OSError(f"its self-test gave {value}, expected {SELFTEST_VALUE}")
    except (OSError, AttributeError, ValueError) as exc:
        unload_library(lib)
        return None, f"failed its self-test: {_one_line(exc)}"
    return lib, None


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created if missing; never removed, so every process locks the
    same inode)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _file_id(path: str):
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
    except OSError:
        return None


def _obtain(cmd: List[str], sources: List[str], flags: List[str], key: str, info: dict) -> Tuple[str, Any]:
    cache = cache_dir()
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as exc:
        raise RuntimeUnavailable(f"kernel cache {cache} cannot be created: {_one_line(exc)}") from None
    target = os.path.join(cache, f"{LIBRARY_PREFIX}{key}.so")
    lib, why = _load_checked(target, key)  # the common case: built before, no lock needed
    if lib is not None:
        info["built"] = False
        return target, lib
    tried = _file_id(target) if why != "not built" else None
    with FileLock(target + ".lock"):
        if tried is None or _file_id(target) != tried:  # another process may have built it while we waited
            lib, why = _load_checked(target, key)
            if lib is not None:
                info["built"] = False
                return target, lib
        if why != "not built":
            info["rebuilt_because"] = f"the cached {os.path.basename(target)} {why}"
        _compile(cmd, sources, target, flags, key)
        info["built"] = True
        lib, why = _load_checked(target, key)
    if lib is None:
        raise RuntimeUnavailable(f"the freshly built kernel library {why}")
    return target, lib


def _default_threads() -> int:
    """0 (the process's CPUs, decided by the library at each call), or the ``CONVATTN_NUM_THREADS`` cap applied to
    the CPUs this process may run on now."""
    raw = os.environ.get(THREADS_VAR, "").strip()
    if not raw.isdigit() or int(raw) < 1:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(int(raw), cpus))


def _setup() -> KernelRuntime:
    if not backend_enabled():
        return KernelRuntime(reason=f"{BACKEND_VAR}=0")
    rt = KernelRuntime()
    try:
        cmd = _compiler()
        identity = compiler_identity(cmd)
        sources = _sources()
        flags = _compile_flags()
        key = build_key(sources, flags, identity)
        rt.info.update(compiler=identity, flags=flags, arch=platform.machine())
        rt.key = key
        path, lib = _obtain(cmd, sources, flags, key, rt.info)
    except RuntimeUnavailable as exc:
        rt.reason = _one_line(exc)
        return rt
    except OSError as exc:
        rt.reason = _one_line(f"kernel library: {exc}")
        return rt
    from .gemm import load_gemm

    gemm, gemm_error = load_gemm()
    if lib.convattn_init(gemm.address if gemm else None, gemm.kind if gemm else 0, _default_threads()) != 0:
        rt.reason = _one_line(f"convattn_init failed: {lib.convattn_last_error().decode(errors='replace')}")
        return rt
    rt.lib = lib
    rt.path = path
    rt.gemm = gemm is not None
    rt.gemm_reason = gemm_error
    rt.gemm_path = gemm.path if gemm else None
    rt.gemm_handle = gemm
    if gemm:
        rt.info.update(gemm_isa=gemm.isa, gemm_kind=gemm.kind)
    rt.threads = int(lib.convattn_get_threads())
    return rt
