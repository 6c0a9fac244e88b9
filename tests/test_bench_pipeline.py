"""Input-pipeline harness: generated JPEG tree, both readers through the training transform, reports. Timings are
reported, never asserted."""
import json
import os

import numpy as np
import pytest

from convattn.bench.pipeline import (build_pipeline, run_pipeline_bench, summarize, time_pipeline,
                                     write_fake_imagenet)
from convattn.bench.pipeline_cli import bench_main

SMALL = [(60, 45), (45, 60)]


def test_generated_tree_is_reused_and_guarded(tmp_path):
    root = str(tmp_path / "fake")
    st = write_fake_imagenet(root, classes=2, per_class=3, sizes=SMALL)
    assert st["images"] == 6 and sorted(os.listdir(root))[-2:] == ["n00000000", "n00000001"]
    mtime = os.path.getmtime(os.path.join(root, "n00000000"))
    assert write_fake_imagenet(root, classes=2, per_class=3, sizes=SMALL)["images"] == 6  # same settings: kept
    assert os.path.getmtime(os.path.join(root, "n00000000")) == mtime
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a generated tree"):
        write_fake_imagenet(str(tmp_path / "mine"), classes=1, per_class=1)


def test_both_pipelines_give_training_batches_and_a_report(tmp_path, capsys):
    root = str(tmp_path / "fake")
    write_fake_imagenet(root, classes=2, per_class=4, sizes=SMALL)
    for name in ("convattn", "convattn-cpp", "native"):
        images, labels = next(build_pipeline(name, root, 1, 4, image_size=32).create_tuple_iterator(output_numpy=True))
        assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32 and set(labels) <= {0, 1}
    with pytest.raises(ValueError, match="unknown pipeline"):
        build_pipeline("dali", root, 1, 4)
    res = time_pipeline(build_pipeline("convattn", root, 1, 2, image_size=32), warmup=1)
    assert res["batches"] == 3 and res["images"] == 6 and res["imgs_per_s"] > 0
    out = run_pipeline_bench(root, workers=(1, 2), repeats=2, batch_size=2, image_size=32, log=lambda *_: None)
    rows = out["rows"]
    assert len(rows) == 2 * 2 * 3  # repeats x workers x pipelines, alternating: the order reverses every repeat
    assert [r["pipeline"] for r in rows[:3]] == ["convattn", "convattn-cpp", "native"] and rows[6]["pipeline"] == "native"
    for e in out["summary"]:
        r = e["convattn/native"]
        assert r["min"] <= r["median"] <= r["max"] and e["convattn-cpp"]["cpu_ms_per_image"] > 0
    # the command line: generates the tree, writes JSON and markdown
    assert bench_main(["--data", str(tmp_path / "g"), "--generate", "--classes", "2", "--per_class", "3",
                       "--workers", "1", "--repeats", "1", "--batch_size", "2", "--image_size", "32",
                       "--out", str(tmp_path / "rep")]) == 0
    data = json.load(open(tmp_path / "rep" / "pipeline.json"))
    assert data["environment"]["images"] == 6 and len(data["rows"]) == 3
    assert "| 1 | convattn-cpp |" in open(tmp_path / "rep" / "pipeline.md").read()
    assert bench_main(["--data", str(tmp_path / "missing")]) == 2
    assert bench_main(["--data", root, "--workers", "999"]) == 2 and "at most" in capsys.readouterr().err


def test_summary_ratios_come_from_the_same_repeat():
    rows = [{"pipeline": "convattn", "workers": 1, "repeat": 0, "imgs_per_s": 90.0},
            {"pipeline": "native", "workers": 1, "repeat": 0, "imgs_per_s": 100.0},
            {"pipeline": "native", "workers": 1, "repeat": 1, "imgs_per_s": 50.0},
            {"pipeline": "convattn", "workers": 1, "repeat": 1, "imgs_per_s": 55.0}]
    (e,) = summarize(rows, ("convattn", "native"))
    assert e["convattn/native"]["min"] == pytest.approx(0.9) and e["convattn/native"]["max"] == pytest.approx(1.1)
    assert e["convattn"]["median"] == pytest.approx(72.5)
