"""Speed harness: pairs, reports, failures isolated per model, bad input. Timings are reported, never asserted."""
import csv
import json

import pytest

from convattn.bench.cli import main as bench_main
from convattn.bench.harness import BenchConfig, baseline_of, resolve_models, run_suite, write_reports, environment


def test_baseline_pairs_follow_the_paper():
    assert baseline_of("acmix_resnet50") == "resnet50"
    assert baseline_of("acmix_swin_tiny") == "swin_tiny"
    assert baseline_of("acmix_san10") == "san10_patchwise"
    assert baseline_of("san19_pairwise") == "resnet50" and baseline_of("san10_patchwise") == "resnet26"
    assert baseline_of("xvolution_resnet34@deploy") == "xvolution_resnet34"
    assert baseline_of("xvolution_resnet34") == "resnet34"
    assert baseline_of("deit_tiny_relu") == "deit_tiny" and baseline_of("swin_tiny_dw") == "swin_tiny"
    assert baseline_of("van_b0") is None and baseline_of("resnet50") is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        BenchConfig(batch_sizes=(0,))
    with pytest.raises(ValueError, match="Unknown model 'van_bx'"):
        resolve_models(["van_bx"])
    with pytest.raises(ValueError, match="no registered model matches"):
        resolve_models(["nothing_*"])
    assert bench_main(["--models", "van_b0", "--batch_sizes", "0"]) == 2


def test_unavailable_device_target_is_refused(monkeypatch, capsys):
    """Whatever build is installed: a target the installation cannot run is refused with the fix named."""
    import convattn.bench.cli as bench_cli

    monkeypatch.setattr(bench_cli, "device_available", lambda target: target != "Ascend")
    assert bench_main(["--models", "van_b0", "--device_target", "Ascend"]) == 2
    err = capsys.readouterr().err
    assert "device target Ascend is not available" in err and "--device_target CPU" in err


def test_suite_reports_failures_and_keeps_going(tmp_path):
    """One run of the harness (one worker process per model): van_b0 and its deploy form (create_model(deploy=True):
    the patch-embedding BatchNorms folded) are benchmarked; pvt_tiny has nothing to re-parameterise, so its
    '@deploy' row fails with the reason and the suite goes on."""
    cfg = BenchConfig(batch_sizes=(2,), warmup=0, iters=2, image_size=(64, 64), model_kwargs={"depths": (1, 1, 1, 1)},
                      op_profile=True)
    rows = run_suite(["van_b0", "van_b0@deploy", "pvt_tiny@deploy"], cfg, log=lambda *_: None)
    ok, deploy, failed = rows
    assert ok["status"] == "ok" and ok["imgs_per_s"] > 0 and ok["params_m"] > 0 and ok["gmacs"] > 0
    assert ok["peak_mem_mb"] > 0 and ok["compile_s"] >= 0
    assert deploy["status"] == "ok" and deploy["model"] == "van_b0@deploy" and deploy["imgs_per_s"] > 0, deploy
    assert deploy["baseline"] == "van_b0" and deploy["params_m"] < ok["params_m"]  # 4 BatchNorms folded away
    # the operator-type profile: shares of one whole, slowest first, the convolutions among them (on the CPU the
    # fused kernels, op type Custom, where the CPU backend serves)
    from convattn.layers import decide_form

    prof = ok["op_profile"]
    assert sum(p["share"] for p in prof) == pytest.approx(1.0) and prof == sorted(prof, key=lambda p: -p["ms"])
    conv = "Custom" if decide_form("CPU").cpu_backend else "Conv2D"
    assert conv in [p["op_type"] for p in prof] and len(ok["top_ops"].split(", ")) == min(5, len(prof))
    assert failed["status"] == "failed" and "switch_to_deploy" in failed["error"], failed
    assert "pvt_tiny@deploy" in failed["error"] and "re-parameterisable" in failed["error"]
    paths = write_reports(rows, environment(cfg), str(tmp_path))
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["ok", "ok", "failed"]
    assert table[0]["top_ops"] == ok["top_ops"] and table[0]["top_ops"].startswith(prof[0]["op_type"] + " ")
    data = json.load(open(paths["json"]))
    assert data["environment"]["mindspore"] == "2.10.0" and data["environment"]["threads"] >= 1
    md = open(paths["md"]).read()
    assert "failed: ValueError" in md and "Top 5 operator types, `van_b0` batch 2" in md
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_deploy_variant_is_built_by_create_model_deploy(monkeypatch):
    """'name@deploy' builds through the one deploy entry point, create_model(deploy=True), in the harness's
    worker (run_one); a deploy form cannot be benchmarked in train mode."""
    import convattn.models
    from convattn.bench import harness

    built = []
    real = convattn.models.create_model

    def spy(name, **kwargs):
        net = real(name, **kwargs)
        built.append((name, kwargs.get("deploy"), net))
        raise RuntimeError("stop after the build")

    monkeypatch.setattr(convattn.models, "create_model", spy)
    import mindspore as ms

    monkeypatch.setattr(ms, "set_device", lambda *a, **k: None)  # the worker's first call; this process ran kernels
    # threads=0: MindSpore sets its CPU thread count once per process, and the suite's earlier tests ran kernels
    cfg = BenchConfig(batch_sizes=(1,), warmup=0, iters=1, image_size=(64, 64), threads=0,
                      model_kwargs={"depths": (1, 1, 1, 1)})
    with pytest.raises(RuntimeError, match="stop after the build"):
        harness.run_one("van_b0@deploy", 1, cfg)
    (name, deploy, net), = built
    assert name == "van_b0" and deploy is True
    assert net.form.deploy and net.deploy_report == ["patch_embed4", "patch_embed3", "patch_embed2", "patch_embed1"]
    with pytest.raises(ValueError, match="cannot train"):
        harness.run_one("van_b0@deploy", 1, BenchConfig(mode="train", threads=0, model_kwargs={"depths": (1, 1, 1, 1)}))


def test_relative_columns_use_the_same_run():
    from convattn.bench.harness import _add_relative

    rows = [{"model": "resnet26", "baseline": None, "batch_size": 8, "status": "ok", "ms_per_step": 100.0, "gmacs": 2.0,
             "imgs_per_s": 80.0},
            {"model": "acmix_resnet26", "baseline": "resnet26", "batch_size": 8, "status": "ok", "ms_per_step": 500.0,
             "gmacs": 2.2, "imgs_per_s": 16.0}]
    _add_relative(rows)
    assert rows[1]["time_ratio"] == pytest.approx(5.0) and rows[1]["mac_ratio"] == pytest.approx(1.1)
    assert rows[1]["rel_throughput"] == pytest.approx(0.2) and rows[1]["defect"] is True
    assert rows[0]["time_ratio"] is None


def test_train_mode_option():
    """--mode train is validated; a bad mode is a clear error, not a silent inference run."""
    assert BenchConfig(mode="train")["mode"] == "train" and BenchConfig()["mode"] == "infer"
    with pytest.raises(ValueError, match="mode must be 'infer'"):
        BenchConfig(mode="training")


def test_formulation_column_follows_the_target():
    """--target builds the benchmarked model in that target's forms; the report names the conv path and attention."""
    import convattn
    from convattn.bench.cli import build_parser
    from convattn.bench.harness import _describe_formulation

    assert build_parser().parse_args(["--target", "Ascend"]).target == "Ascend"
    assert BenchConfig(target="Ascend")["target"] == "Ascend"
    kw = dict(num_classes=10, layers=(1, 1, 1, 1))
    ascend = _describe_formulation(convattn.create_model("acmix_resnet26", target="Ascend", **kw)).split(",")
    cpu_net = convattn.create_model("acmix_resnet26", target="CPU", **kw)
    cpu = _describe_formulation(cpu_net).split(",")
    assert "acmix-conv:depthwise" in ascend and "attn:blocked-matmul" in ascend
    assert "acmix-conv:grouped" in cpu
    assert ("attn:fused-kernel" in cpu) == cpu_net.form.cpu_backend
    plain = convattn.create_model("acmix_resnet26", target="CPU", cpu_backend=False, **kw)
    assert "attn:blocked-matmul" in _describe_formulation(plain).split(",")


def test_parameter_counts_include_frozen_weights():
    """The X-volution deploy form freezes its merged weights: the harness reports every weight the network holds
    (BatchNorm statistics aside, as PyTorch counts) and the trainable count apart, in the row and the tables."""
    from convattn import create_model
    from convattn.bench.harness import markdown, param_columns
    from convattn.bench.model_table import markdown_table
    from convattn.utils.params import BN_STATISTICS

    net = create_model("xvolution_resnet34", num_classes=10, layers=(1, 1, 1, 1), deploy=True)
    assert net.form.deploy and net.deploy_report
    held = sum(p.size for p in net.get_parameters() if p.name.rsplit(".", 1)[-1] not in BN_STATISTICS)
    trainable = sum(p.size for p in net.trainable_params())
    assert trainable < held
    cols = param_columns(net)
    assert cols == {"params_m": pytest.approx(held / 1e6), "trainable_m": pytest.approx(trainable / 1e6)}
    text = f"{held / 1e6:.2f} ({trainable / 1e6:.2f} trainable)"
    env = {"device_target": "CPU", "processor": "x", "threads": 1, "mindspore": "2.10.0", "date": "d",
           "settings": dict(BenchConfig())}
    row = dict(cols, model="m", batch_size=1, imgs_per_s=1.0, ms_per_step=1.0, ms_p10=1.0, ms_p90=1.0, compile_s=0.0,
               gmacs=1.0, peak_mem_mb=1.0, baseline=None, time_ratio=None, mac_ratio=None, defect=None,
               formulation="f", status="ok")
    assert f"| {text} |" in markdown([row], env)
    table = markdown_table([dict(cols, model="m", gmacs=1.0, input="32x32", top1=None, paper="", upstream="")])
    assert f"| {text} |" in table
    same = dict(cols, trainable_m=cols["params_m"])
    assert f"| {held / 1e6:.2f} |" in markdown_table([dict(same, model="m", gmacs=1.0, input="32x32", top1=None,
                                                            paper="", upstream="")])


def test_op_profile_counts_matmul_macs():
    """The operator profile of a Dense layer: its MatMul's multiply-adds from the recorded shapes."""
    import numpy as np
    import mindspore as ms
    from mindspore import nn

    from convattn.bench.harness import _matmul_macs, op_profile

    assert _matmul_macs([[8, 64], [32, 64]]) == 8 * 64 * 32          # Dense: x @ W^T
    assert _matmul_macs([[4, 3, 49, 32], [4, 3, 49, 32]]) == 4 * 3 * 49 * 49 * 32   # q @ k^T per head
    assert _matmul_macs([[8, 64], [7, 5]]) is None
    assert _matmul_macs([[100, 8], [100, 8]]) == 100 * 8 * 8          # Dense weight gradient dy^T x
    net = nn.SequentialCell([nn.Dense(64, 32), nn.Dense(32, 16)])  # two MatMuls named alike in their cells
    x = ms.Tensor(np.ones((8, 64), np.float32))
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)  # as the harness runs (the profiler records shapes of graph kernels)
    try:
        prof = op_profile(lambda: net(x).asnumpy(), steps=2)
    finally:
        ms.set_context(mode=previous)
    mm = {p["op_type"]: p for p in prof}["MatMul"]
    assert mm["calls"] == 2 and mm["gmacs"] == pytest.approx((8 * 64 * 32 + 8 * 32 * 16) / 1e9)
    assert sum(p["share"] for p in prof) == pytest.approx(1.0)


def test_memory_slopes_per_model_from_two_batches():
    from convattn.bench.harness import BenchConfig, memory_slopes

    assert BenchConfig(mode="memory")["mode"] == "memory"
    rows = [{"model": "a", "precision": "float32", "batch_size": 4, "peak_mem_mb": 1400.0, "status": "ok"},
            {"model": "a", "precision": "float32", "batch_size": 12, "peak_mem_mb": 3000.0, "status": "ok"},
            {"model": "b", "precision": "float32", "batch_size": 4, "peak_mem_mb": 900.0, "status": "ok"},
            {"model": "b", "precision": "float32", "batch_size": 12, "status": "failed"}]
    memory_slopes(rows)
    assert rows[0]["mem_mb_per_img"] == rows[1]["mem_mb_per_img"] == 200.0
    assert rows[0]["mem_fixed_mb"] == 600.0
    assert rows[2]["mem_mb_per_img"] is None and rows[3]["mem_mb_per_img"] is None
    assert rows[0]["pool_mb_per_img"] is None  # no pool peaks given


def test_memory_slopes_of_the_pool_peak_beside_the_rss():
    from convattn.bench.harness import memory_markdown, memory_slopes, pool_peak_mb

    report = ("[MS_RUNTIME_PROF]Common mem pool info: Total allocated mem:2048M, peak used mem:1327M, in used mem:0M, "
              "total use by event mem:0M, total idle mem:1024M. Block unit size:1024M")
    assert pool_peak_mb("noise\n" + report + "\n") == 1327.0
    assert pool_peak_mb("no report here") is None
    rows = [{"model": "a", "precision": "float32", "batch_size": 4, "peak_mem_mb": 2900.0, "pool_peak_mb": 447.0,
             "status": "ok", "formulation": "standard"},
            {"model": "a", "precision": "float32", "batch_size": 12, "peak_mem_mb": 6300.0, "pool_peak_mb": 1327.0,
             "status": "ok", "formulation": "standard"}]
    memory_slopes(rows)
    assert rows[0]["mem_mb_per_img"] == 425.0 and rows[1]["pool_mb_per_img"] == 110.0
    assert rows[0]["pool_fixed_mb"] == 7.0
    line = [x for x in memory_markdown(rows).splitlines() if x.startswith("| `a`")][0]
    assert "**425**" in line and "**110**" in line


def test_memory_mode_reads_the_memory_pool_and_recompute_lowers_it():
    """--mode memory end to end on a small network (Ascend form built on CPU): each worker reports MindSpore's pool
    peak beside its RSS (parsed from MindSpore's own exit report, so a MindSpore that stops printing it fails here),
    both slopes come out, and recompute (the config key, through set_recompute) lowers the pool's slope: measured
    2.1 -> 0.75 MB per image here."""
    slopes = {}
    for recompute in (False, True):
        cfg = BenchConfig(batch_sizes=(2, 10), mode="memory", image_size=(64, 64), target="Ascend", threads=0,
                          model_kwargs={"depths": (1, 1, 1, 1)}, recompute=recompute)
        rows = run_suite(["van_b0"], cfg, log=lambda *_: None)
        assert [r["status"] for r in rows] == ["ok", "ok"], rows
        for r in rows:
            assert 0 < r["pool_peak_mb"] < r["peak_mem_mb"], r
            assert r["formulation"].endswith(",recompute") == recompute
        assert rows[1]["pool_peak_mb"] > rows[0]["pool_peak_mb"]
        assert rows[0]["pool_mb_per_img"] == rows[1]["pool_mb_per_img"] > 0
        slopes[recompute] = rows[0]["pool_mb_per_img"]
    assert slopes[True] < 0.6 * slopes[False], slopes


def test_set_recompute_marks_every_residual_block():
    from convattn import create_model
    from convattn.models import set_recompute, small_instance_kwargs
    from mindspore import nn

    net = create_model("swin_tiny", **small_instance_kwargs("swin_tiny")[0])
    blocks = [c for _, c in net.cells_and_names() if type(c).__name__ == "SwinTransformerBlock"]
    assert set_recompute(net) == len(blocks) > 0
    resnet = create_model("acmix_resnet26", **small_instance_kwargs("acmix_resnet26")[0])
    assert set_recompute(resnet) == sum(1 for _, c in resnet.cells_and_names() if type(c).__name__ == "Bottleneck")

    class Plain(nn.Cell):
        def construct(self, x):
            return x
    with pytest.raises(ValueError, match="declares no recompute unit"):
        set_recompute(Plain())
