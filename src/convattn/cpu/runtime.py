"""The CPU backend's kernel runtime: one object per process owns the compiled kernel library.

:func:`runtime` returns the process's :class:`KernelRuntime`, set up on the first call and never raising: either
``available`` (the library built, loaded and initialised) or not, with ``reason`` saying why in one line. The fused
cells of :mod:`convattn.cpu` are only built while it is available, so a failure shows at network construction (the
standard cells are built instead), never at the first forward.

* Source ``kernels/*.cc`` (one shared header), compiled with ``$CXX`` (default ``g++``) into
  ``$CONVATTN_KERNEL_CACHE`` (default ``~/.cache/convattn/kernels``); the file name carries a key of the sources,
  the flags, the compiler's identity and the architecture.
* ``CONVATTN_FUSED_KERNELS=0`` turns the backend off (:func:`backend_enabled`); nothing is built or loaded then.
"""
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["KernelRuntime", "runtime", "backend_enabled", "cache_dir", "cpu_flags", "KERNEL_DIR"]

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
BACKEND_VAR = "CONVATTN_FUSED_KERNELS"


def backend_enabled() -> bool:
    """False when ``CONVATTN_FUSED_KERNELS`` turns the CPU backend off (``0``, ``false``, ``off``, ``no``)."""
    return os.environ.get(BACKEND_VAR, "1").strip().lower() not in ("0", "false", "off", "no")


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cache_dir() -> str:
    return os.environ.get("CONVATTN_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "convattn",
                                                                    "kernels")


@dataclass
class KernelRuntime:
    """What the backend has: ``path`` of the loaded kernel library (None when unavailable), ``reason`` (why not,
    one line), ``gemm`` (the AVX-512 GEMM is ready: the fused Dense, convolution and softmax-attention kernels
    need it) and ``threads`` (the worker threads the kernels use)."""
    path: Optional[str] = None
    reason: Optional[str] = None
    gemm: bool = False
    gemm_reason: Optional[str] = None
    threads: int = 1
    info: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.path is not None


_RUNTIME: Optional[KernelRuntime] = None


def runtime() -> KernelRuntime:
    """The process's kernel runtime (built, loaded and initialised on the first call; never raises)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = _setup()
    return _RUNTIME


def _compile_flags():
    flags = ["-std=c++17", "-O3", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math"]
    if {"avx2", "fma"} <= cpu_flags():
        flags += ["-mavx2", "-mfma"]
    return flags


def _compile(sources, target: str, flags) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    try:
        cmd = [os.environ.get("CXX", "g++")] + flags + ["-o", tmp] + list(sources) + ["-ldl"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _setup() -> KernelRuntime:
    if not backend_enabled():
        return KernelRuntime(reason=f"{BACKEND_VAR}=0")
    rt = KernelRuntime()
    try:
        sources = sorted(os.path.join(KERNEL_DIR, f) for f in os.listdir(KERNEL_DIR) if f.endswith((".cc", ".h")))
        digest = hashlib.sha256()
        for s in sources:
            with open(s, "rb") as f:
                digest.update(f.read())
        flags = _compile_flags()
        digest.update(" ".join(flags).encode())
        os.makedirs(cache_dir(), exist_ok=True)
        target = os.path.join(cache_dir(), f"convattn_kernels_{digest.hexdigest()[:16]}.so")
        if not os.path.exists(target):
            _compile([s for s in sources if s.endswith(".cc")], target, flags)
        rt.path = target
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        rt.reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return rt
    from .gemm import gemm_library, gemm_unavailable_reason

    rt.gemm = gemm_library() is not None
    rt.gemm_reason = gemm_unavailable_reason()
    return rt
