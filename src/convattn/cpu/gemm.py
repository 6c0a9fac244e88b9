"""The GEMM of the fused Dense, convolution and attention kernels: a private copy of MindSpore's own oneDNN, set to
AVX-512.

``import convattn`` caps MindSpore's oneDNN at AVX2 (:mod:`convattn._env`: on AVX-512 machines without that cap
oneDNN runs every convolution larger than 1x1 on its reference kernel), and under the cap MindSpore's CPU ``MatMul``
runs at about half the speed the machine allows (the ``convattn.bench`` op profile: 58-77 % of a Swin, DeiT or
PVT forward). The cap is process-wide and read once, so the matrix products cannot be exempted inside MindSpore.
The kernels therefore call ``dnnl_sgemm`` of a *separate* copy of the same ``libdnnl.so.3`` that MindSpore ships:
copied into the kernel cache under the name of its content's SHA-256 (one copy per machine and MindSpore build,
whatever the virtual environment; written under a file lock), loaded with ``RTLD_LOCAL | RTLD_DEEPBIND`` so the
dynamic loader maps it as its own library with its own settings, capped at ``avx512_core`` through
``dnnl_set_max_cpu_isa`` before its first use (on a CPU without AVX-512 it keeps the process's cap), and checked
with a small product. :mod:`convattn.cpu.runtime` passes its ``dnnl_sgemm`` address to the kernel library through
``convattn_init`` (no environment variable).

``docs/cpu-gemm.md`` has the measurement against ``scipy-openblas32`` (a GEMM made for linking, as a declared
dependency) that kept this copy: OpenBLAS was 16 % slower in geometric mean over the products that matter, up to
32 % on some. The kernel library also accepts a CBLAS ``sgemm`` (``GEMM_KIND_CBLAS``), should that change.

Where anything of this fails (no ``libdnnl.so.3`` in the MindSpore package, a copy that cannot be written, loaded or
that computes wrongly) the runtime's ``gemm`` is False, ``gemm_reason`` says why, and the Dense layers keep
MindSpore's ``MatMul`` (with the fused bias). ``CONVATTN_FUSED_GEMM=0`` turns it off.
"""
import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .runtime import FileLock, unload_library, backend_enabled, cache_dir, cpu_flags, runtime

__all__ = ["gemm_library", "gemm_unavailable_reason", "gemm_enabled", "gemm_isa", "load_gemm", "GemmHandle",
           "GEMM_KIND_NONE", "GEMM_KIND_DNNL", "GEMM_KIND_CBLAS"]

GEMM_KIND_NONE, GEMM_KIND_DNNL, GEMM_KIND_CBLAS = 0, 1, 2  # convattn_init's gemm_kind
_ISA_AVX512_CORE = 0x27  # dnnl_cpu_isa_avx512_core
_COPY_PREFIX = "libdnnl_private_"


@dataclass
class GemmHandle:
    """A loaded, checked GEMM: ``address`` of its sgemm, ``kind`` (``GEMM_KIND_*``), the library's ``path``,
    oneDNN's effective ``isa`` and the ctypes handle ``lib`` (kept loaded)."""
    address: int
    kind: int
    path: str
    isa: Optional[int]
    lib: Any


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


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_hash(source: str, cache: str) -> str:
    """SHA-256 of ``source``, remembered in the cache by the file's identity (path, size, mtime, inode), so a
    process hashes the 58 MB library only when it changed."""
    st = os.stat(source)
    ident = f"{os.path.realpath(source)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    memo = os.path.join(cache, f"libdnnl_sha256_{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json")
    try:
        with open(memo, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("ident") == ident and len(saved.get("sha256", "")) == 64:
            return saved["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    value = _sha256(source)
    fd, tmp = tempfile.mkstemp(prefix=".memo_", dir=cache)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"ident": ident, "sha256": value}, f)
    os.replace(tmp, memo)
    return value


def _write_copy(source: str, target: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".copy_", suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_dnnl(path: str) -> GemmHandle:
    """Loads the copy, caps it at avx512_core where the CPU has AVX-512, and checks dnnl_sgemm on a 2 x 2 product."""
    lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0) | os.RTLD_NOW)
    try:
        return _check_dnnl(lib, path)
    except (OSError, AttributeError):
        unload_library(lib)  # so that a fresh copy at the same path is really loaded anew
        raise


def _check_dnnl(lib, path: str) -> GemmHandle:
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= cpu_flags():
        status = lib.dnnl_set_max_cpu_isa(ctypes.c_int(_ISA_AVX512_CORE))
        if status != 0:
            raise OSError(f"dnnl_set_max_cpu_isa returned status {status}")
    fn = lib.dnnl_sgemm
    i64, fp = ctypes.c_int64, ctypes.POINTER(ctypes.c_float)
    fn.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, ctypes.c_float, fp, i64, fp, i64, ctypes.c_float, fp,
                   i64]
    fn.restype = ctypes.c_int
    a = (ctypes.c_float * 4)(1, 2, 3, 4)
    b = (ctypes.c_float * 4)(5, 6, 7, 8)
    c = (ctypes.c_float * 4)(1, 1, 1, 1)
    status = fn(b"N", b"T", 2, 2, 2, 1.0, a, 2, b, 2, 1.0, c, 2)  # c = a b^T + 1
    if status != 0 or list(c) != [18.0, 24.0, 40.0, 54.0]:
        raise OSError(f"dnnl_sgemm self-test failed (status {status}, got {list(c)})")
    isa = int(lib.dnnl_get_effective_cpu_isa())
    return GemmHandle(address=ctypes.cast(fn, ctypes.c_void_p).value, kind=GEMM_KIND_DNNL, path=path, isa=isa,
                      lib=lib)


def load_gemm() -> Tuple[Optional[GemmHandle], Optional[str]]:
    """(the GEMM for ``convattn_init``, None) or (None, why not). Called once, by the runtime's setup."""
    if not gemm_enabled():
        return None, "CONVATTN_FUSED_GEMM=0"
    try:
        source = _mindspore_dnnl()
        cache = cache_dir()
        os.makedirs(cache, exist_ok=True)
        target = os.path.join(cache, f"{_COPY_PREFIX}{_content_hash(source, cache)[:16]}.so")
        size = os.path.getsize(source)
        if os.path.exists(target) and os.path.getsize(target) == size:
            try:
                return _load_dnnl(target), None
            except OSError:
                pass  # junk or damaged: copy again below (a library that loaded stays mapped: load the new copy)
        with FileLock(target + ".lock"):
            if not (os.path.exists(target) and os.path.getsize(target) == size):
                _write_copy(source, target)
            elif _sha256(target) != _content_hash(source, cache):
                _write_copy(source, target)
        return _load_dnnl(target), None
    except (OSError, AttributeError, ImportError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        return None, text[0] if text else type(exc).__name__


def gemm_library() -> Optional[str]:
    """Path of the loaded and configured GEMM library the kernels use, or None (see
    :func:`gemm_unavailable_reason`)."""
    rt = runtime()
    return rt.gemm_path if rt.gemm else None


def gemm_isa() -> Optional[int]:
    """oneDNN's effective ISA code in the private copy (``0x27``: avx512_core; ``0x7``: avx2), or None."""
    rt = runtime()
    return rt.info.get("gemm_isa") if rt.gemm else None


def gemm_unavailable_reason() -> Optional[str]:
    """None when the GEMM is ready; otherwise why not."""
    rt = runtime()
    if rt.gemm:
        return None
    return rt.gemm_reason or (f"kernel library unavailable: {rt.reason}" if not rt.available else "unavailable")
