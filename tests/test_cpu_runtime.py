"""The CPU kernel runtime (convattn.cpu.runtime): built once per machine under a file lock, self-tested before it is
declared available, rebuilt when the cached library is junk, never raising, configured through convattn_init (no
environment variables), with a settable persistent thread pool and refusals as text.

``runtime()`` is set up once per process, so every case runs in a subprocess with its own kernel cache. One cold
build (two processes racing for it) is shared by the cases that need a warm cache: they copy it.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "src" / "convattn" / "cpu" / "kernels"
REAL_CXX = os.environ.get("CXX", "g++")
needs_compiler = pytest.mark.skipif(shutil.which(REAL_CXX.split()[0]) is None, reason=f"no {REAL_CXX}")

# every kernel the Python cells call by name (ops.Custom("<path>:<name>")): the library's ABI
KERNEL_NAMES = [f"{op}_{mode}{s}" for op in ("agg", "corr", "agg_t") for mode in ("interleaved", "contiguous")
                for s in ("", "_s2")] + [
    "tap_softmax", "tap_softmax_grad", "diff", "scatter", "pairwise_mlp", "gelu", "gelu_grad", "layer_norm",
    "layer_norm_grad", "layer_norm_cf", "layer_norm_cf_grad", "bias_add", "bias_sum", "dw_conv", "dw_conv_grad",
    "linear", "linear_grad", "attention_packed", "attention_split", "attention_packed_grad",
    "attention_split_grad", "conv", "conv_grad", "max_pool", "max_pool_grad"] + [
    f"bn_{mode}{act}{g}" for mode in ("infer", "train") for act in ("", "_relu", "_add_relu") for g in ("", "_grad")]


def _env(cache, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVATTN_") and k != "CXX"}
    env.update(PYTHONPATH=str(REPO / "src"), CONVATTN_KERNEL_CACHE=str(cache))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _python(script, cache, timeout=600, **extra):
    """Runs ``script`` in a fresh interpreter; returns (stdout, stderr), failing the test on a non-zero exit."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=_env(cache, **extra),
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout, done.stderr


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


REPORT = """
    import json, os
    before = dict(os.environ)
    from convattn.cpu.runtime import runtime
    rt = runtime()
    print(json.dumps({"available": rt.available, "reason": rt.reason, "info": rt.info, "gemm": rt.gemm,
                      "path": rt.path, "env_unchanged": dict(os.environ) == before}))
"""


def _report(cache, **extra):
    import json
    out, _ = _python(REPORT, cache, **extra)
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cold_start(tmp_path_factory):
    """Two processes set the runtime up at once on an empty cache through a compiler wrapper that logs its calls."""
    import json
    root = tmp_path_factory.mktemp("cold")
    cache, log = root / "cache", root / "cxx.log"
    cxx = _script(root / "cxx", f'echo "$*" >> "{log}"\nexec {REAL_CXX} "$@"\n')
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(REPORT)],
                              env=_env(cache, CXX=cxx, CONVATTN_FUSED_GEMM=0), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-4000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return cache, log.read_text().splitlines(), results


@pytest.fixture
def warm_cache(cold_start, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(cold_start[0], cache)
    return cache


def test_no_compiler_leaves_the_runtime_unavailable_with_its_reason(tmp_path):
    report = _report(tmp_path / "cache", CXX="/bin/false")
    assert not report["available"] and report["path"] is None
    assert "/bin/false" in report["reason"] and "\n" not in report["reason"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("convattn_kernels_*.so"))


def test_gcc_older_than_9_is_refused_with_the_version(tmp_path):
    old_gcc = _script(tmp_path / "old-g++", "echo 7.3.0\n")
    report = _report(tmp_path / "cache", CXX=old_gcc)
    assert not report["available"]
    assert report["reason"].startswith("needs GCC >= 9, found 7.3.0")


@needs_compiler
def test_two_processes_on_a_cold_cache_compile_once(cold_start):
    cache, log, results = cold_start
    compiles = [line for line in log if "-shared" in line]
    assert len(compiles) == 1, log
    assert all(r["available"] for r in results), results
    assert sorted(r["info"]["built"] for r in results) == [False, True]  # one built, the other waited and loaded
    assert results[0]["path"] == results[1]["path"]
    assert len(list(cache.glob("convattn_kernels_*.so"))) == 1
    assert not list(cache.glob(".build_*"))  # no half-written library left behind


@needs_compiler
def test_every_kernel_symbol_is_exported(cold_start):
    import ctypes
    lib = ctypes.CDLL(cold_start[2][0]["path"])
    missing = [name for name in KERNEL_NAMES if not hasattr(lib, name)]
    assert len(KERNEL_NAMES) == 49 and missing == []


@needs_compiler
def test_junk_in_the_cache_is_rebuilt_and_the_kernels_compute(warm_cache):
    """A junk file under the library's name is detected (it does not load), rebuilt once, and MindSpore's ops.Custom
    then runs the GEMM kernel with what convattn_init set through ctypes (the same handle)."""
    (library,) = warm_cache.glob("convattn_kernels_*.so")
    library.write_bytes(b"not a shared library" * 100)
    out, _ = _python("""
        import numpy as np
        import mindspore as ms
        from mindspore import ops
        from convattn.cpu.runtime import runtime
        rt = runtime()
        assert rt.available and rt.gemm, (rt.reason, rt.gemm_reason)
        assert "cannot be loaded" in rt.info["rebuilt_because"], rt.info
        rng = np.random.default_rng(0)
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((37, 24), (16, 24), (16,)))
        linear = ops.Custom(f"{rt.path}:linear", out_shape=lambda x, w, b: (x[0], w[0]),
                            out_dtype=lambda x, w, b: x, func_type="aot")
        y = linear(ms.Tensor(x), ms.Tensor(w), ms.Tensor(b)).asnumpy()
        np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)
        gelu = ops.Custom(f"{rt.path}:gelu", out_shape=lambda x: x, out_dtype=lambda x: x, func_type="aot")
        g = gelu(ms.Tensor(x)).asnumpy()
        from math import erf
        ref = x * 0.5 * (1 + np.vectorize(erf)(x / np.sqrt(2)))
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-6)
        print("ok", rt.path)
    """, warm_cache)
    assert out.startswith("ok") and str(library) in out
    assert library.read_bytes()[:4] == b"\x7fELF"


@needs_compiler
def test_junk_that_cannot_be_rebuilt_leaves_the_runtime_unavailable(warm_cache, tmp_path):
    (library,) = warm_cache.glob("convattn_kernels_*.so")
    library.write_bytes(b"junk")
    # the same compiler identity (so the same key) but every build fails
    broken = _script(tmp_path / "cxx", f'case "$*" in *-shared*) echo "error: no space" >&2; exit 1;; esac\n'
                                       f'exec {REAL_CXX} "$@"\n')
    report = _report(warm_cache, CXX=broken, CONVATTN_FUSED_GEMM=0)
    assert not report["available"] and report["path"] is None
    assert report["reason"].startswith("compiling the kernels failed") and "no space" in report["reason"]


@needs_compiler
def test_the_runtime_sets_no_environment_variable(warm_cache):
    report = _report(warm_cache)  # with the GEMM: it is passed through convattn_init, not CONVATTN_GEMM_LIBRARY
    assert report["available"] and report["env_unchanged"]
    import re
    sources = "".join(p.read_text() for p in KERNELS.glob("*.cc")) + (KERNELS / "common.h").read_text()
    assert not re.search(r"\bgetenv\b|\bsecure_getenv\b|\benviron\b", sources)


@needs_compiler
def test_threads_are_settable_and_the_pool_persists(warm_cache):
    out, _ = _python("""
        import os
        from convattn.cpu.runtime import runtime, set_threads
        rt = runtime()
        assert rt.available, rt.reason
        assert rt.threads == len(os.sched_getaffinity(0))  # the default: the CPUs this process may run on
        assert set_threads(3) == 3 == rt.threads
        assert rt.lib.convattn_selftest() == 499500.0
        assert rt.pool_workers() == 2
        for _ in range(50):  # the same workers serve every call: no thread is created per call
            rt.lib.convattn_selftest()
        assert rt.pool_workers() == 2
        assert rt.set_threads(1) == 1 and rt.lib.convattn_selftest() == 499500.0
        assert rt.set_threads(None) == len(os.sched_getaffinity(0))
        pid = os.fork()  # a child gets a pool of its own
        if pid == 0:
            os._exit(0 if rt.set_threads(2) == 2 and rt.lib.convattn_selftest() == 499500.0 else 1)
        assert os.waitpid(pid, 0)[1] == 0
        print("ok")
    """, warm_cache, CONVATTN_FUSED_GEMM=0)
    assert out.strip() == "ok"


@needs_compiler
def test_a_refused_call_is_explained_in_words(warm_cache):
    out, err = _python("""
        import ctypes
        import numpy as np
        from convattn.cpu.runtime import runtime
        rt = runtime()

        def call(name, arrays):
            n = len(arrays)
            shapes = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
            return getattr(rt.lib, name)(
                n, (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays]), (ctypes.c_int * n)(*[a.ndim for a in arrays]),
                (ctypes.POINTER(ctypes.c_int64) * n)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes]),
                (ctypes.c_char_p * n)(*[str(a.dtype).encode() for a in arrays]), None, None)

        z = lambda *s: np.zeros(s, np.float32)
        assert rt.last_error() is None
        for _ in range(3):
            assert call("linear", [z(2, 3, 4), z(5, 4), z(5), z(6, 5)]) == 1
        print(rt.last_error())
        assert call("gelu", [np.zeros(3, np.int32), z(3)]) == 2
        print(rt.last_error())
        assert call("gelu", [z(7), z(7)]) == 0
    """, warm_cache, CONVATTN_FUSED_GEMM=0)
    assert out.splitlines() == ["linear: x has 3 dims, expected 2", "gelu: x is int32, expected float32"]
    assert err.count("linear: x has 3 dims, expected 2") == 1  # written to stderr once, not at every call


def test_kernel_sources_stay_within_gcc_9():
    """C++17 as GCC 9 has it: no __builtin_bit_cast (GCC 11) nor C++20 headers or keywords."""
    import re
    for path in list(KERNELS.glob("*.cc")) + list(KERNELS.glob("*.h")):
        text = re.sub(r"//[^\n]*", "", path.read_text())  # comments may name what is avoided
        for banned in ("__builtin_bit_cast", "std::bit_cast", "<bit>", "<span>", "<concepts>", "<ranges>",
                       "consteval", "constinit", "co_await", "[[likely]]", "[[unlikely]]"):
            assert banned not in text, f"{path.name} uses {banned}"
    assert sorted(p.name for p in KERNELS.glob("*.h")) == ["common.h"]
