"""The oneDNN speed default: applied only by an explicit call (the tools, create_model for the CPU target), only on
x86-64 CPUs with AVX-512 (where MindSpore 2.10's oneDNN runs k>1 convolutions on its reference kernel, AMX or not),
never over the user's value, and never by ``import convattn``."""
import os
import subprocess
import sys
from pathlib import Path

from convattn import _env

REPO = Path(__file__).resolve().parents[1]


def test_where_the_default_applies():
    assert _env.cpu_default_reason({"avx2", "avx512f"}, "x86_64")
    assert _env.cpu_default_reason({"avx512f", "amx_tile", "amx_bf16"}, "x86_64")  # measured: AMX does not save it
    assert _env.cpu_default_reason({"avx2", "fma"}, "x86_64") is None
    assert _env.cpu_default_reason({"avx512f"}, "aarch64") is None


def test_user_value_wins(monkeypatch):
    monkeypatch.setenv(_env.ONEDNN_ISA_VAR, "ALL")
    assert _env.apply_cpu_defaults() is False
    assert os.environ[_env.ONEDNN_ISA_VAR] == "ALL"


def test_import_changes_no_environment_variable():
    code = ("import mindspore, os; e = dict(os.environ); import convattn, convattn.models, convattn.deploy, "
            "convattn.engine, convattn.bench, convattn.convert; assert e == dict(os.environ), "
            "set(os.environ.items()) ^ set(e.items())")
    env = {k: v for k, v in os.environ.items() if k != _env.ONEDNN_ISA_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
