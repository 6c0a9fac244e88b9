"""Every Ascend recipe is shown to fit a 910A: the projection table of configs/README.md is the one
``scripts/recipe_memory.py --write`` generates from the measured slopes (configs/memory_slopes.yaml), every Ascend
recipe has a slope and projects within the limit at its stated global batch, and the projection's arithmetic holds.
No measurement here (fast): the slopes are read from the checked-in file."""
import re
import shutil

import pytest

from conftest import REPO
from convattn.bench import recipe_memory as rm
from convattn.bench.recipe_memory_cli import main
from convattn.utils.readme import DOC_BLOCKS

PATHS = rm.default_paths(str(REPO))


@pytest.fixture(scope="module")
def shipped():
    return rm.read_recipes(PATHS["configs"]), rm.read_slopes(PATHS["slopes"])


def test_readme_table_is_the_generated_one(shipped):
    recipes, slopes = shipped
    assert DOC_BLOCKS[rm.MARKER] == "configs/README.md"
    text = (REPO / DOC_BLOCKS[rm.MARKER]).read_text()
    block = re.search(rf"<!-- {rm.MARKER}:begin -->\n(.*?)<!-- {rm.MARKER}:end -->", text, re.S)
    assert block, "configs/README.md lacks the recipe-memory markers"
    assert block.group(1).rstrip("\n") == rm.markdown_table(rm.projections(recipes, slopes), slopes), (
        "the table in configs/README.md is stale or hand-edited: run python scripts/recipe_memory.py --write")


def test_every_ascend_recipe_has_a_slope_and_fits(shipped):
    recipes, slopes = shipped
    assert len(recipes) >= 36
    problems = []
    for row in rm.projections(recipes, slopes):
        r = row["recipe"]
        if "error" in row:
            problems.append(f"{r['path']}: {row['error']}")
        elif row["total_gb"] > rm.LIMIT_GB:
            problems.append(f"{r['path']}: {row['total_gb']:.1f} GB > {rm.LIMIT_GB} GB")
        # a fix keeps the published global batch, and says so (a one-device recipe need not state one)
        if r["stated_global"] != r["global_batch"] and (r["devices"] > 1 or r["stated_global"] is not None):
            problems.append(f"{r['path']}: header global batch {r['stated_global']}, recipe {r['global_batch']}")
    assert not problems, "\n".join(problems)
    assert rm.check(PATHS["configs"], PATHS["slopes"], PATHS["readme"]) == []


def test_slope_file_is_measured_not_typed(shipped):
    """Each entry's slope is the line through its measured peaks (what the harness computes), at the recipe's size,
    from the Ascend formulation."""
    _, slopes = shipped
    for model, e in slopes.items():
        peaks = e["float32"]["peak_mb"]
        (b0, p0), (b1, p1) = sorted(peaks.items())[0], sorted(peaks.items())[-1]
        assert len(peaks) == 2 and e["float32"]["mb_per_img"] == pytest.approx((p1 - p0) / (b1 - b0), abs=0.1), model
        assert e["float32"]["fixed_mb"] == pytest.approx(p0 - b0 * (p1 - p0) / (b1 - b0), abs=0.2), model
        assert e["target"] == "Ascend" and e["params_m"] > 0 and e["mindspore"] and e["date"], model


ENTRY = {"image_size": 224, "params_m": 10.0, "trainable_m": 10.0, "float32": {"mb_per_img": 100.0}}
RECIPE = {"path": "x/made_up_ascend.yaml", "model": "made_up", "batch_size": 64, "accumulation_steps": 1,
          "devices": 8, "global_batch": 512, "stated_global": 512, "amp_level": "O2", "opt": "adamw",
          "ema": False, "distribute": True, "image_size": 224, "num_classes": 1000}


def test_projection_arithmetic():
    p = rm.project(RECIPE, ENTRY)
    assert p["source"] == f"RSS fp32 x {rm.FP16_FACTOR:g}"
    assert p["activations_gb"] == pytest.approx(100.0 * rm.FP16_FACTOR * 64 / 1024)
    # fp32 weights + fp16 copies (O2), gradients + their all-reduced copy, two AdamW moments: 6 + 8 + 8 bytes
    assert p["state_gb"] == pytest.approx(10e6 * 22 / 2 ** 30)
    assert p["total_gb"] == pytest.approx(p["activations_gb"] + p["state_gb"] + rm.FIXED_GB)
    doubled = rm.project({**RECIPE, "batch_size": 128}, ENTRY)
    assert doubled["activations_gb"] == pytest.approx(2 * p["activations_gb"])
    assert doubled["state_gb"] == p["state_gb"]
    accum = rm.project({**RECIPE, "batch_size": 32, "accumulation_steps": 2}, ENTRY)  # same global batch
    assert accum["activations_gb"] == pytest.approx(p["activations_gb"] / 2)
    assert accum["state_gb"] == pytest.approx(p["state_gb"] + 10e6 * 4 / 2 ** 30)  # the accumulators
    sgd = rm.project({**RECIPE, "opt": "momentum", "ema": True, "distribute": False}, ENTRY)
    assert sgd["state_gb"] == pytest.approx(10e6 * (6 + 4 + 4 + 4) / 2 ** 30)
    measured = rm.project(RECIPE, {**ENTRY, "float16": {"mb_per_img": 30.0}})
    assert measured["source"] == "O2 RSS" and measured["activations_gb"] == pytest.approx(30.0 * 64 / 1024)
    fp32 = rm.project({**RECIPE, "amp_level": "O0"}, ENTRY)
    assert fp32["activations_gb"] == pytest.approx(100.0 * 64 / 1024) and fp32["state_gb"] < p["state_gb"]
    # the convolution-BatchNorm families keep more in float32 under O2: their factor is the higher one
    assert rm.fp16_factor("resnet50") == rm.fp16_factor("san19_pairwise") == rm.FP16_FACTOR_HIGH
    assert rm.fp16_factor("swin_tiny") == rm.fp16_factor("van_b3") == rm.FP16_FACTOR < rm.FP16_FACTOR_HIGH
    conv = rm.project({**RECIPE, "model": "resnet50"}, ENTRY)
    assert conv["activations_gb"] == pytest.approx(p["activations_gb"] * rm.FP16_FACTOR_HIGH / rm.FP16_FACTOR)
    assert rm.project(RECIPE, ENTRY, factor=0.5)["activations_gb"] == pytest.approx(100.0 * 0.5 * 64 / 1024)
    with pytest.raises(ValueError, match="unknown optimizer"):
        rm.project({**RECIPE, "opt": "lamb"}, ENTRY)


def test_the_memory_pool_slope_is_preferred_to_the_rss():
    """Where the memory pool's slope was read (the graph's tensors, what a device allocator holds) it is the one
    projected; the RSS slope (which also holds MindSpore's CPU kernels' scratch) only where no pool was read."""
    pooled = {**ENTRY, "float32": {"mb_per_img": 400.0, "pool_mb_per_img": 100.0}}
    p = rm.project(RECIPE, pooled)
    assert p["source"] == f"pool fp32 x {rm.FP16_FACTOR:g}"
    assert p["activations_gb"] == pytest.approx(100.0 * rm.FP16_FACTOR * 64 / 1024)
    assert rm.project(RECIPE, ENTRY)["source"].startswith("RSS")
    assert rm.project({**RECIPE, "amp_level": "O0"}, pooled)["source"] == "pool fp32"
    assert rm.measured_slope({"float32": {}}, "float32") is None


def test_limit_and_the_fitting_accumulation():
    # activations of 1 GB per image (fp16): 64 images project ~66 GB
    big = {**ENTRY, "float32": {"mb_per_img": 1024.0 / rm.FP16_FACTOR}}
    assert not rm.project(RECIPE, big)["fits"]
    fix = rm.fitting_accumulation(RECIPE, big)
    assert fix["batch_size"] * fix["accumulation_steps"] == RECIPE["batch_size"]  # the global batch is kept
    assert fix["total_gb"] <= rm.LIMIT_GB and fix["batch_size"] == 16  # 32 images would be 34 GB
    assert rm.fitting_accumulation({**RECIPE, "batch_size": 1}, {**big, "params_m": 2e3, "trainable_m": 2e3}) is None


def _tree(tmp_path, batch=128, header_global=1024):
    configs = tmp_path / "configs"
    (configs / "fam").mkdir(parents=True)
    stated = f"# Global batch {header_global} = {batch} x 8\n" if header_global else ""
    (configs / "fam" / "swin_tiny_imagenet_ascend.yaml").write_text(
        "# made up\n" + stated
        + "# Launch: bash scripts/run_distribute_train.sh configs/fam/swin_tiny_imagenet_ascend.yaml /data 8 Ascend\n"
        f"distribute: true\nbatch_size: {batch}\nmodel: swin_tiny\namp_level: O2\nopt: adamw\n")
    slopes = tmp_path / "slopes.yaml"
    rm.write_slopes(str(slopes), {"swin_tiny": {**ENTRY, "float32": {"mb_per_img": 500.0}, "date": "2026-01-01"}})
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n<!-- {rm.MARKER}:begin -->\nold\n<!-- {rm.MARKER}:end -->\ny\n")
    return [f"--configs={configs}", f"--slopes={slopes}", f"--readme={readme}"]


def test_check_fails_on_a_stale_table_and_an_over_limit_recipe(tmp_path, capsys):
    args = _tree(tmp_path)
    assert main(args + ["--check"]) == 1  # 500 MB x the fp16 factor x 128 images > 30 GB, and the table is 'old'
    err = capsys.readouterr().err
    assert "projects" in err and "accumulation_steps 2" in err and "stale" in err
    assert main(args + ["--write"]) == 0
    assert "stale" not in (capsys.readouterr().err + "".join(rm.check(*[a.split("=", 1)[1] for a in args])))
    # the fix the check proposes: same global batch, half the micro-batch
    shutil.rmtree(tmp_path / "configs")
    args = _tree(tmp_path, batch=64)  # header still says 1024: 64 x 8 x 1 contradicts it
    problems = rm.check(*[a.split("=", 1)[1] for a in args])
    assert any("header says global batch 1024" in p for p in problems), problems
    recipe = tmp_path / "configs" / "fam" / "swin_tiny_imagenet_ascend.yaml"
    recipe.write_text(recipe.read_text() + "accumulation_steps: 2\n")
    assert main(args + ["--write"]) == 0 and main(args + ["--check"]) == 0
    assert "accumulation_steps 2 (micro-batch 64)" in (tmp_path / "README.md").read_text()
    shutil.rmtree(tmp_path / "configs")
    args = _tree(tmp_path, header_global=None)  # over 8 devices, a recipe must state the global batch it keeps
    assert any("states no 'global batch N'" in p for p in rm.check(*[a.split("=", 1)[1] for a in args]))
