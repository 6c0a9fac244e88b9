"""Shared test fixtures.

The official-code fixtures live in ``../shared/reference`` beside the repository (override with
``CONVATTN_REFERENCE_DIR``). A clone without them skips those tests with the reason; under CI
(``CI=true``) a missing fixture is a failure.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # tests run against the working tree even without `pip install -e .`

import convattn  # noqa: E402

convattn.apply_cpu_defaults()  # ONEDNN_MAX_CPU_ISA=AVX2 where it helps, before MindSpore runs a kernel
# tests that expect a graph compile to fail would leave MindSpore's analyze_fail.ir in ./rank_0 (the tools keep it
# out of the working directory themselves: convattn.utils.errors.command)
import tempfile  # noqa: E402

os.environ.setdefault("MS_OM_PATH", os.path.join(tempfile.gettempdir(), "convattn-test-graph-dumps"))


def reference_root() -> Path:
    return Path(os.environ.get("CONVATTN_REFERENCE_DIR", REPO.parent / "shared" / "reference"))


def require_reference(name: str) -> Path:
    """Path of a fixture file in the reference folder, or skip (fail under CI) when it is absent."""
    path = reference_root() / name
    if not path.exists():
        msg = (f"reference fixture {path} not found: it ships in ../shared/reference beside the repository "
               "(or set CONVATTN_REFERENCE_DIR)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " -- required under CI")
        pytest.skip(msg)
    return path


@pytest.fixture
def reference_dir() -> Path:
    root = reference_root()
    if not root.is_dir():
        require_reference("README.md")
    return root


@pytest.fixture(params=["graph", "pynative"])
def ms_mode(request):
    """Run a test once in GRAPH_MODE and once in PYNATIVE_MODE."""
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=previous)


@pytest.fixture
def pynative():
    """Run a test in PYNATIVE_MODE (no graph compile: cheaper where a test only executes once)."""
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)


@pytest.fixture(scope="session")
def digits32(tmp_path_factory):
    """The quickstart digits (32x32 RGB PNG ImageFolder tree), written once per session by the engine's writer."""
    from convattn.data import write_digits_imagefolder
    root = tmp_path_factory.mktemp("digits32") / "tree"
    write_digits_imagefolder(root, size=32)
    return str(root)


# The contributors' tier, `python -m pytest -m quick` (every package, under 3 minutes on 2 cores): these files
# whole, plus the representatives marked `quick` inside other files (tests/test_model_sweep.py).
QUICK_FILES = {
    "test_registry.py", "test_utils.py", "test_engine_config.py", "test_cli.py", "test_docs.py", "test_layering.py",
    "test_window_gather.py", "test_macs.py", "test_pth_reader.py", "test_recipes.py", "test_val_layout.py",
    "test_plot.py", "test_quickstart_data.py", "test_launch_ranktable.py", "test_engine_components.py",
    "test_data_decode.py", "test_parity_table.py", "test_min_input_size.py", "test_convert_cli.py",
    "test_engine_data.py", "test_infer.py", "test_targets.py", "test_env_default.py", "test_fused_gelu.py", "test_fused_pool.py",
    "test_recipe_memory.py", "test_official_memory.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in QUICK_FILES and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.quick)
