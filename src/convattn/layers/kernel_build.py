"""Build of the C++ ``ops.Custom`` (AOT) kernels in ``kernels/``: compile, cache, and the fallback when it fails.

Layer modules never compile anything themselves: they ask :func:`kernel_library` for the shared library (built on
the first request) and :func:`fused_kernels_available` whether to build their fused cells at all.

* Source ``kernels/local_window.cc``, compiled with ``$CXX`` (default ``g++``) into ``$CONVATTN_KERNEL_CACHE``
  (default ``~/.cache/convattn/kernels``) as ``local_window_<hash>.so``, the hash covering the source and the
  flags. The build writes a temporary file and renames it into place, so a concurrent process sees either no
  library or the whole one, and a failed build leaves nothing behind.
* Where the build fails (no compiler, a compiler error) the library is None, :func:`unavailable_reason` says why,
  and :func:`fused_kernels_available` warns once and returns False: the layers fall back to their standard-op
  formulations (:mod:`convattn.layers.targets`).
* ``CONVATTN_FUSED_KERNELS=0`` turns the kernels off without building them.
"""
import hashlib
import os
import subprocess
import tempfile
import warnings
from typing import Optional

__all__ = ["KERNEL_SOURCE", "cache_dir", "cpu_flags", "kernel_library", "kernels_enabled", "fused_kernels_available", "unavailable_reason"]

KERNEL_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "local_window.cc")
_STATE = {"path": None, "error": None, "tried": False, "warned": False}


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_flags():
    # -fno-trapping-math lets the softmax's exp vectorise (no FP exceptions are enabled in MindSpore)
    flags = ["-std=c++17", "-O3", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math"]
    cpu = cpu_flags()
    if {"avx2", "fma"} <= cpu:  # portable across the x86 machines of one cluster, unlike -march=native
        flags += ["-mavx2", "-mfma"]
    return flags


def cache_dir() -> str:
    return os.environ.get("CONVATTN_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "convattn",
                                                                    "kernels")


def _compile(source_path: str, target: str, flags) -> None:
    """Compile ``source_path`` to ``target`` atomically (temporary file in the cache, then a rename)."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    try:
        cmd = [os.environ.get("CXX", "g++")] + flags + ["-o", tmp, source_path, "-ldl"]  # dlopen (the GEMM library)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process sees the old state or the whole library
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def kernel_library() -> Optional[str]:
    """Path of the compiled kernel library (built on the first call, then cached on disk and in this process), or
    None when the build failed (:func:`unavailable_reason` keeps why)."""
    if _STATE["tried"]:
        return _STATE["path"]
    _STATE["tried"] = True
    try:
        with open(KERNEL_SOURCE, "rb") as f:
            source = f.read()
        flags = _compile_flags()
        key = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:16]
        cache = cache_dir()
        os.makedirs(cache, exist_ok=True)
        target = os.path.join(cache, f"local_window_{key}.so")
        if not os.path.exists(target):
            _compile(KERNEL_SOURCE, target, flags)
        _STATE["path"] = target
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _STATE["error"] = str(exc)
    return _STATE["path"]


def kernels_enabled() -> bool:
    """False when ``CONVATTN_FUSED_KERNELS`` turns the kernels off (``0``, ``false``, ``off``, ``no``)."""
    return os.environ.get("CONVATTN_FUSED_KERNELS", "1").strip().lower() not in ("0", "false", "off", "no")


def unavailable_reason() -> Optional[str]:
    """None when the kernels are enabled and built (builds them on the first call); otherwise why they are not:
    the environment switch or the build's error."""
    if not kernels_enabled():
        return "CONVATTN_FUSED_KERNELS=0"
    if kernel_library() is None:
        return _STATE["error"] or "the kernel build failed"
    return None


def fused_kernels_available() -> bool:
    """True when the kernels are enabled and compiled (compiles them on first call); a failed build warns once.
    Whether a network uses them is its target's choice (:func:`convattn.layers.targets.select_form`: the CPU
    target only)."""
    if not kernels_enabled():
        return False
    if kernel_library() is None:
        if not _STATE["warned"]:
            _STATE["warned"] = True
            warnings.warn("convattn: the fused CPU local-window kernels could not be built, so ACmix and SAN use "
                          f"their standard-op formulations (slower, more memory). Reason: {_STATE['error']}. "
                          "Install g++ (or set CXX) to enable them.", RuntimeWarning, stacklevel=2)
        return False
    return True
