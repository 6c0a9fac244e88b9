"""Whatever happens to the CPU backend's build (no compiler, a cache of junk), networks built for the CPU target
run and equal the standard form: the backend either serves them or is left out at construction, never failing at
the first forward. Each case runs in a fresh process with a private kernel cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, warnings
import numpy as np
import mindspore as ms
import convattn
convattn.apply_cpu_defaults()
out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("acmix_resnet26", "van_b0", "swin_tiny"):
        kwargs, size = convattn.models.small_instance_kwargs(name)
        cpu = convattn.create_model(name, num_classes=5, target="CPU", **kwargs)
        ref = convattn.create_model(name, num_classes=5, target="GPU", pretrained={p.name: p for p in cpu.get_parameters()},
                                    **kwargs)
        cpu.set_train(False); ref.set_train(False)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((2,) + tuple(size)).astype(np.float32))
        diff = float(np.abs(cpu(x).asnumpy() - ref(x).asnumpy()).max())
        out[name] = {"diff": diff, "cpu_backend": cpu.form.cpu_backend, "note": cpu.form.note}
out["warnings"] = [str(w.message) for w in caught if "CPU backend" in str(w.message)]
print("RESULT " + json.dumps(out))
"""


def _run(tmp_path, **env):
    full = dict(os.environ, CONVATTN_KERNEL_CACHE=str(tmp_path / "cache"), **env)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in [full.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=full, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _check_equal(res):
    for name in ("acmix_resnet26", "van_b0", "swin_tiny"):
        assert res[name]["diff"] <= 1e-5, (name, res[name])


def test_no_compiler_gives_standard_cells_with_one_warning(tmp_path):
    res = _run(tmp_path, CXX="/bin/false")
    _check_equal(res)
    assert not any(res[n]["cpu_backend"] for n in ("acmix_resnet26", "van_b0", "swin_tiny"))
    assert res["acmix_resnet26"]["note"], "the form says why the backend is off"
    assert len(res["warnings"]) == 1, res["warnings"]


def test_junk_in_the_cache_never_fails_a_forward(tmp_path):
    _run(tmp_path)  # fills the cache
    libs = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix == ".so"]
    assert libs, "the first run cached a library"
    for p in libs:
        p.write_bytes(b"junk" * 64)
    _check_equal(_run(tmp_path))
