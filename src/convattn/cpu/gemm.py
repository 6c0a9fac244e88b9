"""The GEMM library of the fused Dense layer: a private copy of MindSpore's own oneDNN, set to AVX-512.

``import convattn`` caps MindSpore's oneDNN at AVX2 (:mod:`convattn._env`: on AVX-512 machines without that cap
oneDNN runs every convolution larger than 1x1 on its reference kernel), and under the cap MindSpore's CPU ``MatMul``
runs at about half the speed the machine allows (the ``convattn.bench`` op profile: 58-77 % of a Swin, DeiT or
PVT forward). The cap is process-wide and read once, so the matrix products cannot be exempted inside MindSpore.
The fused Dense layer (:class:`convattn.layers.linear.Linear`) therefore calls ``dnnl_sgemm`` of a *separate*
copy of the same ``libdnnl.so.3`` that MindSpore ships: copied once into the kernel cache (so the dynamic loader
maps it as its own library, with its own settings), loaded with ``RTLD_LOCAL | RTLD_DEEPBIND``, and capped at
``avx512_core`` through ``dnnl_set_max_cpu_isa`` before its first use (on a CPU without AVX-512 it keeps the
process's cap). The kernels (``linear`` / ``linear_grad`` in ``kernels/local_window.cc``) find it through
``CONVATTN_GEMM_LIBRARY``, which :func:`gemm_library` sets.

Where anything of this fails (no ``libdnnl.so.3`` in the MindSpore package, a copy that cannot be written or
loaded) :func:`gemm_library` returns None, :func:`gemm_unavailable_reason` says why, and the Dense layers keep
MindSpore's ``MatMul`` (with the fused bias). ``CONVATTN_FUSED_GEMM=0`` turns it off.
"""
import ctypes
import hashlib
import os
import shutil
import tempfile
from typing import Optional

from .runtime import backend_enabled, cache_dir, cpu_flags

__all__ = ["gemm_library", "gemm_unavailable_reason", "gemm_enabled", "GEMM_LIBRARY_VAR", "gemm_isa"]

GEMM_LIBRARY_VAR = "CONVATTN_GEMM_LIBRARY"
_ISA_AVX512_CORE = 0x27  # dnnl_cpu_isa_avx512_core
_LOADED = {"tried": False, "path": None, "error": None, "isa": None}


def gemm_enabled() -> bool:
    """False when ``CONVATTN_FUSED_GEMM`` (or ``CONVATTN_FUSED_KERNELS``) turns it off."""
    return backend_enabled() and os.environ.get("CONVATTN_FUSED_GEMM", "1").strip().lower() not in (
        "0", "false", "off", "no")


def _mindspore_dnnl() -> str:
    import mindspore
    path = os.path.join(os.path.dirname(mindspore.__file__), "lib", "libdnnl.so.3")
    if not os.path.exists(path):
        raise OSError(f"MindSpore's oneDNN library is not at {path}")
    return path


def _private_copy(source: str) -> str:
    """The cached copy of ``source`` (keyed by its size and modification time), written atomically."""
    st = os.stat(source)
    key = hashlib.sha256(f"{source}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = cache_dir()
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, f"libdnnl_private_{key}.so")
    if not os.path.exists(target):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return target


def gemm_library() -> Optional[str]:
    """Path of the loaded and configured private oneDNN copy (set up on the first call; also exported as
    ``CONVATTN_GEMM_LIBRARY`` for the kernels), or None (see :func:`gemm_unavailable_reason`)."""
    if _LOADED["tried"]:
        return _LOADED["path"]
    _LOADED["tried"] = True
    if not gemm_enabled():
        _LOADED["error"] = "CONVATTN_FUSED_GEMM=0"
        return None
    try:
        path = _private_copy(_mindspore_dnnl())
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0) | os.RTLD_NOW)
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= cpu_flags():
            status = lib.dnnl_set_max_cpu_isa(ctypes.c_int(_ISA_AVX512_CORE))
            if status != 0:
                raise OSError(f"dnnl_set_max_cpu_isa returned status {status}")
        _LOADED["isa"] = int(lib.dnnl_get_effective_cpu_isa())
        _LOADED["lib"] = lib  # keep it loaded
        os.environ[GEMM_LIBRARY_VAR] = path
        _LOADED["path"] = path
    except (OSError, AttributeError, ImportError) as exc:
        _LOADED["error"] = str(exc)
    return _LOADED["path"]


def gemm_isa() -> Optional[int]:
    """oneDNN's effective ISA code in the private copy (``0x27``: avx512_core; ``0x7``: avx2), or None."""
    gemm_library()
    return _LOADED["isa"]


def gemm_unavailable_reason() -> Optional[str]:
    """None when the private GEMM library is ready; otherwise why not."""
    return None if gemm_library() is not None else (_LOADED["error"] or "unavailable")
