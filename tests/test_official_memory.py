"""scripts/official_memory.py, the official-code side of the training-memory comparison: a stand-alone tool for the
official code's own Python, so it must import neither convattn nor MindSpore nor torch at module level; its slope and
table helpers are checked here on made-up peaks (the measurement itself needs torch and the official clones)."""
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "official_memory.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("official_memory", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loads_without_convattn_mindspore_or_torch():
    """A fresh interpreter (this test process has convattn and MindSpore loaded already) loads the script by path
    and runs --help: none of the three frameworks may be imported."""
    code = ("import importlib.util, json, sys\n"
            f"spec = importlib.util.spec_from_file_location('official_memory', {str(SCRIPT)!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "try:\n    mod.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('convattn', 'mindspore', 'torch', 'timm'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "--repeat" in out.stdout and "--refs" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_slope_and_intercept(tool):
    assert tool.slope_intercept([(4, 1000.0), (12, 1800.0)]) == pytest.approx((100.0, 600.0))
    # least squares over three batches; one batch size only has no slope
    assert tool.slope_intercept([(4, 1000), (8, 1420), (12, 1800)]) == pytest.approx((100.0, 606.6667), rel=1e-4)
    assert tool.slope_intercept([(4, 1000), (4, 1010)]) is None
    assert tool.BATCHES == (4, 12) and tool.STEPS == 3   # the harness's MEMORY_BATCHES / MEMORY_STEPS


def test_summary_and_table_give_ranges_over_repeats(tool):
    runs = [dict(model="van_b0", repeat=0, batch=4, peak_mb=800.0, status="ok"),
            dict(model="van_b0", repeat=0, batch=12, peak_mb=1560.0, status="ok"),
            dict(model="van_b0", repeat=1, batch=4, peak_mb=810.0, status="ok"),
            dict(model="van_b0", repeat=1, batch=12, peak_mb=1586.0, status="ok"),
            dict(model="san10_pairwise", repeat=0, batch=4, peak_mb=3000.0, status="ok"),
            dict(model="san10_pairwise", repeat=0, batch=12, status="error", reason="killed (out of memory?)")]
    s = tool.summarize(runs)
    assert list(s) == ["van_b0", "san10_pairwise"]
    assert s["van_b0"]["mb_per_img"] == pytest.approx([95.0, 97.0])
    assert s["van_b0"]["fixed_mb"] == pytest.approx([420.0, 422.0])
    assert s["van_b0"]["peaks"] == {4: [800.0, 810.0], 12: [1560.0, 1586.0]}
    assert s["san10_pairwise"]["mb_per_img"] == [] and "out of memory" in s["san10_pairwise"]["failed"][0]
    md = tool.memory_markdown(s)
    assert "| model | peak MB by batch | MB / image | fixed MB | formulation |" in md
    assert "| `van_b0` | 4: 800–810, 12: 1560–1586 | **95–97** | 420–422 | official PyTorch |" in md
    assert "| `san10_pairwise` | failed: batch 12: killed (out of memory?) |" in md
    assert tool.fmt_range([96.2, 95.8]) == "96" and tool.fmt_range([]) == "–"
