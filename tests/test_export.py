"""Export to MINDIR and ONNX: every registered model, verified; export-safe forms equal the fast ones; bad input.

Export plan of ``test_every_model_exports_and_verifies`` (every registered model appears, the variants with
``-m slow``; the split keeps the file near 5 minutes on 2 busy cores). Measured per export on 2 shared cores at load ~10 (test instances): ONNX of a
network with LocalWindowGather slice gathers (ACmix-ResNet, SAN) 95-180 s, almost all of it MindSpore compiling
the ~1500-node slice graph; every other ONNX or MINDIR export 3-30 s.

* ``BOTH`` -- one model per code path (block type, attention form, stem): MINDIR and ONNX. Models registered
  later and not listed below get both formats too.
* ``SLICE_GATHER`` -- the ACmix-ResNet and SAN representatives: MINDIR at network level here; their ONNX path
  (the export-safe LocalWindowGather, SAN's arange position grid) is exported per module in
  ``test_slice_gather_modules_export_onnx`` (3x3 windows: the same slice code, 9 instead of 49 slices per
  gather) and per network in the ``slow`` test
  ``test_slice_gather_networks_export_onnx`` (and in ``scripts/export_table.py``).
* ``MINDIR_ONLY`` -- depth variants whose test instance is the same network as a ``SLICE_GATHER`` one.
* everything else (width/depth variants of a ``BOTH`` code path): ONNX only, the stricter exporter.

The single-format models (``MINDIR_ONLY``, ``ONNX_ONLY``: depth/width variants) export only with ``-m slow``: each
is built from the same cells as its representative, which exports by default in its format(s) (the plan test
checks both, and that the ``twins.TWINS`` among them are even the identical network); ``python
scripts/export_table.py`` exports all of them.

Measured: the whole file (81 tests, slow deselected) 246 s on 2 shared cores at load 2-4, 734 s at load 9-14.
All 38 models in both formats at test size: ``python scripts/export_table.py`` (~35 min at load ~10).
"""
import json
import os
import stat
from collections import OrderedDict

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.deploy import (ExportError, ExportSafeGELU, ExportSafeMaxPool2d, ExportVerificationError,
                             ascend_grouped_conv_report, export_model)
from convattn.deploy import export as export_mod
from convattn.bench.target_table import SAN_64
from convattn.models.registry import model_entrypoint, small_instance_kwargs
from twins import TWINS, network_signature
from workers import quiet, run_in_workers, unwrap

FP32_TOL = 1e-4

BOTH = ["resnet26", "resnet34", "van_b0", "deit_tiny", "deit_tiny_relu", "deit_tiny_dw", "swin_tiny", "swin_tiny_relu",
        "swin_tiny_dw", "acmix_swin_tiny", "pvt_tiny", "acmix_pvt_tiny", "xvolution_resnet34", "xvolution_resnet50",
        "acmix_san10"]  # acmix_san's test instance has 3x3 footprints: its slice-gather ONNX is cheap
SLICE_GATHER = ["acmix_resnet26", "san10_pairwise", "san10_patchwise"]
# single-format model -> the model exported to both formats (or SLICE_GATHER) that has its code path
MINDIR_ONLY = {"acmix_resnet38": "acmix_resnet26", "acmix_resnet50": "acmix_resnet26",
               "san15_pairwise": "san10_pairwise", "san19_pairwise": "san10_pairwise",
               "san15_patchwise": "san10_patchwise", "san19_patchwise": "san10_patchwise"}
ONNX_ONLY = {"acmix_san15": "acmix_san10", "acmix_san19": "acmix_san10", "acmix_pvt_small": "acmix_pvt_tiny", "acmix_swin_small": "acmix_swin_tiny", "deit_small": "deit_tiny",
             "deit_small_dw": "deit_tiny_dw", "deit_small_relu": "deit_tiny_relu", "pvt_small": "pvt_tiny",
             "resnet38": "resnet26", "resnet50": "resnet26", "swin_small": "swin_tiny", "van_b1": "van_b0",
             "van_b2": "van_b0", "van_b3": "van_b0", "van_b4": "van_b0", "van_b5": "van_b0", "van_b6": "van_b0"}
# models exported to both formats only with -m slow: every cell class of their test instance is in the test
# instance of a model exported by default (checked below), e.g. Swin windows with the ReLU core = swin_tiny's
# windows + deit_tiny_relu's core
COMPOSITES = {"swin_tiny_relu": ("swin_tiny", "deit_tiny_relu"), "swin_tiny_dw": ("swin_tiny", "deit_tiny_dw"),
              "xvolution_resnet50": ("resnet26", "xvolution_resnet34"), "resnet34": ("resnet26", "xvolution_resnet34")}


def _export_formats(name):
    if name in SLICE_GATHER or name in MINDIR_ONLY:
        return ["MINDIR"]
    if name in ONNX_ONLY:
        return ["ONNX"]
    return ["MINDIR", "ONNX"]  # BOTH, and any model registered after this plan was measured


def _family_firsts():
    """The first registered model of each family module (for the heavier per-family checks)."""
    firsts = OrderedDict()
    for name in convattn.list_models():
        firsts.setdefault(model_entrypoint(name).__module__, name)
    return list(firsts.values())


def _small(name, num_classes=10):
    """The small instance of ``name`` in eval mode, and its input size (C, H, W)."""
    kwargs, size = small_instance_kwargs(name)
    net = convattn.create_model(name, num_classes=num_classes, **kwargs)
    net.set_train(False)
    return net, size


def _perturb_bn(net, seed=0):
    """Non-trivial BatchNorm statistics, so BN folding is really exercised."""
    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            c = cell.moving_mean.shape[0]
            cell.moving_mean.set_data(ms.Tensor(rng.normal(0, 0.2, c).astype(np.float32)))
            cell.moving_variance.set_data(ms.Tensor(rng.uniform(0.5, 2.0, c).astype(np.float32)))
            cell.gamma.set_data(ms.Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            cell.beta.set_data(ms.Tensor(rng.normal(0, 0.2, c).astype(np.float32)))


def _state(net):
    """``net``'s weights as a name -> Parameter dict (``create_model(pretrained=...)`` takes it)."""
    return {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), name=p.name) for p in net.get_parameters()}


def _cpu_cells(net):
    """Names of the CPU backend's cells (convattn.cpu: ops.Custom kernels) inside ``net``."""
    return [n for n, c in net.cells_and_names() if type(c).__module__.startswith("convattn.cpu")]


def _ckpt(name, path, num_classes=10):
    """Save the small instance of ``name`` (perturbed BatchNorm) to ``path``; its ``export_model`` arguments
    ``image_size`` and ``model_kwargs``."""
    net, _ = _small(name, num_classes)
    _perturb_bn(net)
    ms.save_checkpoint(net, str(path))
    kwargs, size = small_instance_kwargs(name)
    return dict(image_size=size[1:], model_kwargs=kwargs)


# ---------------------------------------------------------------- export-safe operators


def test_export_safe_gelu_equals_exact_gelu():
    x = np.concatenate([np.linspace(-12, 12, 200001), np.random.default_rng(0).standard_normal(10000) * 3])
    x = ms.Tensor(x.astype(np.float32))
    exact = nn.GELU(approximate=False)(x).asnumpy()
    safe = ExportSafeGELU()(x).asnumpy()
    rel = np.abs(safe - exact) / np.maximum(1.0, np.abs(exact))
    assert rel.max() < 1e-6, rel.max()  # float32 rounding level (measured 6.6e-7)
    tanh = nn.GELU()(x).asnumpy()  # what the exporter would give for nn.GELU(): far off exact
    assert np.abs(tanh - exact).max() > 1e-4


def test_export_safe_gelu_has_no_erf(tmp_path):
    import onnx
    x = ms.Tensor(np.linspace(-5, 5, 64, dtype=np.float32).reshape(1, 1, 8, 8))
    ms.onnx.export(ExportSafeGELU(), x, file_name=str(tmp_path / "g.onnx"), input_names=["x"], output_names=["y"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "g.onnx")).graph.node}
    assert "Erf" not in ops and "Tanh" not in ops, ops


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (3, 1, 1), (2, 2, 1), (5, 2, 2), (5, 3, 1), ((3, 5), (2, 1), (1, 2))])
def test_export_safe_maxpool_equals_padded_maxpool(k, s, p):
    """Edge-replicated pad + valid pool == MindSpore's implicit (-inf) padding, for any input: all-negative
    maps, +-inf, odd and even sizes (a zero pad would be wrong for the negative maps)."""
    rng = np.random.default_rng(0)
    pad = p if isinstance(p, tuple) else (p, p)
    ref_pool = nn.MaxPool2d(k, s, pad_mode="pad", padding=pad)
    safe = ExportSafeMaxPool2d.from_cell(ref_pool)
    for shape in [(2, 3, 9, 8), (1, 2, 7, 11), (1, 1, 6, 6)]:
        x = rng.standard_normal(shape).astype(np.float32) - 4.0
        # (no window of only -inf: MindSpore's CPU 'valid' MaxPool returns float32 lowest for one, not -inf)
        x[0, 0, 0, 1], x[0, -1, -1, -1], x[-1, 0, 2, 3] = -np.inf, np.inf, -np.inf
        ref, out = ref_pool(ms.Tensor(x)).asnumpy(), safe(ms.Tensor(x)).asnumpy()
        assert out.shape == ref.shape and np.array_equal(out, ref), (shape, np.argwhere(out != ref)[:4])


def test_export_safe_maxpool_onnx_dynamic_batch(tmp_path):
    import onnx
    import onnxruntime as ort
    ref_pool = nn.MaxPool2d(3, 2, pad_mode="pad", padding=1)
    x = ms.Tensor(np.zeros((2, 3, 9, 9), np.float32))
    path = str(tmp_path / "p.onnx")
    ms.onnx.export(ExportSafeMaxPool2d.from_cell(ref_pool), x, file_name=path, input_names=["x"], output_names=["y"],
                   dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    assert {n.op_type for n in onnx.load(path).graph.node} <= {"Slice", "Concat", "MaxPool"}
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in (1, 4):
        xb = np.random.default_rng(b).standard_normal((b, 3, 9, 9)).astype(np.float32) - 3.0
        assert np.array_equal(sess.run(None, {"x": xb})[0], ref_pool(ms.Tensor(xb)).asnumpy())


def test_export_safe_maxpool_rejects_what_it_cannot_replace():
    with pytest.raises(TypeError, match="pad_mode='pad'"):
        ExportSafeMaxPool2d.from_cell(nn.MaxPool2d(3, 2))
    with pytest.raises(TypeError, match="ceil_mode"):
        ExportSafeMaxPool2d.from_cell(nn.MaxPool2d(3, 2, pad_mode="pad", padding=1, ceil_mode=True))
    with pytest.raises(ValueError, match="at most half the kernel"):
        ExportSafeMaxPool2d(3, 2, 2)


def test_san_position_grid_without_linspace_is_bit_identical():
    """SAN's export-safe position grid (arange * step - 1: the exporter has no LinSpace) equals linspace."""
    from mindspore import ops
    from convattn.layers.acmix import acmix_position

    for h, w in [(1, 1), (1, 5), (7, 3), (14, 14), (28, 56), (56, 56), (112, 112), (224, 225)]:
        grid = acmix_position(h, w).asnumpy()
        assert np.array_equal(grid[0, 0], np.broadcast_to(ops.linspace(-1.0, 1.0, w).asnumpy(), (h, w))), (h, w)
        assert np.array_equal(grid[0, 1], np.broadcast_to(ops.linspace(-1.0, 1.0, h).asnumpy()[:, None], (h, w)))


def _deploy_form_case(name):
    """The export form of the small ``name`` (``create_model(export_safe=True, cpu_backend=False,
    deploy='auto')``, what export_model builds for ONNX) from the weights of its default form with perturbed
    BatchNorm statistics (a worker process): both outputs, whether an exact nn.GELU, a padded nn.MaxPool2d or a
    CPU-backend cell is left, whether every export-safe flag is on, and the form and re-parameterisation built."""
    net, size = _small(name)
    _perturb_bn(net)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2,) + size).astype(np.float32))
    ms.set_context(mode=ms.PYNATIVE_MODE if name in SLICE_GATHER else ms.GRAPH_MODE)
    ref = net(x).asnumpy()
    safe_net = convattn.create_model(name, num_classes=10, pretrained=_state(net), load_args={"classifier": None},
                                     export_safe=True, cpu_backend=False, deploy="auto", **small_instance_kwargs(name)[0])
    out = safe_net(x).asnumpy()
    cells = list(safe_net.cells_and_names())
    exact_gelu = any(isinstance(c, nn.GELU) and c.approximate == "none" for _, c in cells)
    padded_pool = any(isinstance(c, nn.MaxPool2d) and getattr(c, "use_pad", False) for _, c in cells)
    safe = all(c.export_safe for _, c in cells if isinstance(getattr(c, "export_safe", None), bool))
    return {"ref": ref, "out": out, "exact_gelu": exact_gelu, "padded_pool": padded_pool, "export_safe": safe,
            "cpu_cells": _cpu_cells(safe_net), "form": safe_net.form, "deploy_report": safe_net.deploy_report,
            "default_form": net.form}


DEPLOY_FORM_MODELS = _family_firsts() + ["resnet26"]


@pytest.mark.parametrize("name", DEPLOY_FORM_MODELS)
def test_deploy_form_equals_training_form(name, worker_cases):
    """The export form (built export-safe, standard cells, re-parameterised where the model can be) with the
    default form's weights keeps the function, in GRAPH mode; PyNative for the slice-gather networks, whose
    export-safe GRAPH compile takes minutes (the module ONNX test runs that formulation compiled)."""
    r = unwrap(worker_cases[("deploy_form", name)])
    assert not r["exact_gelu"] and not r["padded_pool"] and r["export_safe"]
    assert r["cpu_cells"] == [], r["cpu_cells"][:5]  # the export network has no convattn.cpu cells
    form = r["form"]
    assert form.export_safe and not form.cpu_backend and form.deploy == bool(r["deploy_report"]), form
    assert not r["default_form"].export_safe and not r["default_form"].deploy
    err = np.abs(r["out"] - r["ref"]).max()
    assert err <= 1e-5 * max(1.0, np.abs(r["ref"]).max()), (err, r["deploy_report"])


def test_ascend_form_of_every_model_has_no_grouped_conv():
    """create_model(target='Ascend'): every registered model is free of non-depth-wise grouped convs; its CPU
    form has some exactly in the ACmix models (the grouped dep_conv the Ascend form builds depth-wise)."""
    flagged = {}
    for name in convattn.list_models():
        asc = convattn.create_model(name, num_classes=10, target="Ascend", **small_instance_kwargs(name)[0])
        assert asc.target == "Ascend" and asc.form.target == "Ascend" and not asc.form.cpu_backend, name
        assert ascend_grouped_conv_report(asc) == [], name
        flagged[name] = len(ascend_grouped_conv_report(_small(name)[0]))
    assert all(flagged[n] > 0 for n in flagged if n.startswith("acmix_")), flagged  # ACmix had some to switch
    assert all(flagged[n] == 0 for n in flagged if not n.startswith("acmix_")), flagged


def _ascend_legal_case(name):
    """The Ascend form of the small ``name`` built from its CPU form's weights (a worker process): parameter
    names and shapes and outputs of both, the grouped convs of each, and what the loader mapped between forms."""
    net, size = _small(name)
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2,) + tuple(size)).astype(np.float32))
    names = {p.name: tuple(p.shape) for p in net.get_parameters()}
    ref = net(x).asnumpy()
    asc = convattn.create_model(name, num_classes=10, target="Ascend", pretrained=_state(net),
                                load_args={"classifier": None}, **small_instance_kwargs(name)[0])
    asc.set_train(False)
    out = asc(x).asnumpy()
    return {"names": names, "after": {p.name: tuple(p.shape) for p in asc.get_parameters()}, "ref": ref, "out": out,
            "mapped": asc.load_report["form_mapped"], "grouped_cpu": ascend_grouped_conv_report(net),
            "grouped": ascend_grouped_conv_report(asc), "target": asc.target, "cpu_cells": _cpu_cells(asc)}


ASCEND_LEGAL_MODELS = ["acmix_resnet26", "acmix_swin_tiny", "acmix_pvt_tiny"]


@pytest.mark.parametrize("name", ASCEND_LEGAL_MODELS)
def test_ascend_legal_conv_path_keeps_function_and_names(name, worker_cases):
    """The three ACmix conv-path hosts (ResNet module with stride-2 blocks, Swin window form, PVT form): the
    Ascend form (create_model(target='Ascend')) takes the CPU form's weights, has no grouped conv left and equals
    it."""
    r = unwrap(worker_cases[("ascend_legal", name)])
    names, after = r["names"], r["after"]
    assert r["target"] == "Ascend" and r["grouped_cpu"] and r["grouped"] == [] and r["cpu_cells"] == []
    assert after.keys() == names.keys()  # dep_conv.weight keeps its name, only its shape changes
    changed = sorted(n for n in names if names[n] != after[n])
    assert changed and all(n.endswith("dep_conv.weight") for n in changed), changed
    assert sorted(r["mapped"]) == changed  # the one loader reshaped exactly those
    assert np.abs(r["out"] - r["ref"]).max() <= 1e-5 * max(1.0, np.abs(r["ref"]).max())


def test_cli_ascend_export_has_no_grouped_conv(tmp_path):
    """--ascend (= --target Ascend): the network is built in its Ascend form (no conversion left to the deploy
    transforms), and the artifact is verified against the CPU form."""
    from convattn.deploy.cli import main

    small, _ = small_instance_kwargs("acmix_pvt_tiny")
    out = tmp_path / "o"
    args = ["--model", "acmix_pvt_tiny", "--random_weights", "--num_classes", "10", "--format", "MINDIR",
            "--image_size", "64", "64", "--model_kwargs", json.dumps(small), "--out", str(out)]
    assert main(args + ["--ascend"]) == 0
    side = json.loads((out / "acmix_pvt_tiny.mindir.json").read_text())
    assert side["ascend_non_depthwise_grouped_convs"] == [] and side["target"] == "Ascend"
    transforms = side["deploy_transforms"]  # built in its Ascend form (depth-wise), standard cells, not export-safe
    assert transforms["form"].startswith("Ascend") and "standard cells" in transforms["form"], transforms
    assert transforms["cpu_backend"] is False and transforms["export_safe"] is False and side["export_safe"] is False
    assert side["verification"]["reference"].startswith("the network built for CPU")
    with pytest.raises(SystemExit):
        main(args + ["--ascend", "--target", "GPU"])  # contradictory
    with pytest.raises(SystemExit):
        main(args + ["--target", "TPU"])


# one family per device-dependent formulation host; the format each one's path is cheapest in
# (format, small-instance overrides and input side: SAN at 64x64, as bench.target_table's SAN_64)
ASCEND_FORM_EXPORTS = {"acmix_resnet26": ("MINDIR", ({}, None)), "acmix_swin_tiny": ("ONNX", ({}, None)),
                       "acmix_san10": ("ONNX", ({}, None)), "san10_pairwise": ("MINDIR", SAN_64)}


# ACmix-SAN's Ascend form is ACmix-ResNet's depth-wise conv path (exported here to MINDIR and, in ACmix-Swin, to
# ONNX) around SAN's non-fused patchwise attention (exported to both formats by every_model[acmix_san10]): -m slow
ASCEND_FORM_SLOW = {"acmix_san10"}


def _ascend_form_export_case(name, folder):
    """A checkpoint of the CPU form of ``name`` exported with target='Ascend' into ``folder``: the export result."""
    fmt, (overrides, side) = ASCEND_FORM_EXPORTS[name]
    kwargs, size = small_instance_kwargs(name, input_size=side, **overrides)
    size = size[1:]
    cpu = convattn.create_model(name, num_classes=10, target="CPU", **kwargs)
    ckpt = os.path.join(folder, "cpu.ckpt")
    ms.save_checkpoint(cpu, ckpt)
    (res,) = export_model(name, ckpt=ckpt, fmt=fmt, out_dir=os.path.join(folder, "o"), image_size=size,
                          model_kwargs=kwargs, target="Ascend", log=quiet)
    return res


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ASCEND_FORM_SLOW else n
                                  for n in sorted(ASCEND_FORM_EXPORTS)])
def test_ascend_form_export_from_a_cpu_checkpoint(name, tmp_path, request):
    """A checkpoint of the CPU form exported with target='Ascend': the Ascend graph (depth-wise conv path, no
    fused kernels) is written and verified against the CPU form of the same weights."""
    if name in ASCEND_FORM_SLOW:
        res = _ascend_form_export_case(name, str(tmp_path))
    else:
        res = unwrap(request.getfixturevalue("worker_cases")[("ascend_form_export", name)])
    side = json.loads(open(res.sidecar).read())
    assert side["target"] == "Ascend" and side["ascend_non_depthwise_grouped_convs"] == []
    assert side["verification"]["reference"].startswith("the network built for CPU")
    assert res.max_abs_diff <= FP32_TOL
    transforms = side["deploy_transforms"]  # the Ascend form is built with standard cells: no fused kernels
    assert transforms["cpu_backend"] is False and transforms["form"].startswith("Ascend"), transforms
    assert transforms["export_safe"] == (res.format == "ONNX")


def test_van_patch_embed_bn_is_folded():
    """create_model(deploy=True), the one deploy entry point, folds VAN's four patch-embedding BatchNorms."""
    net, size = _small("van_b0")
    n_bn = sum(isinstance(c, nn.BatchNorm2d) for _, c in net.cells_and_names())
    dep = convattn.create_model("van_b0", num_classes=10, deploy=True, **small_instance_kwargs("van_b0")[0])
    assert dep.deploy_report == ["patch_embed4", "patch_embed3", "patch_embed2", "patch_embed1"]
    assert dep.form.deploy and not net.form.deploy and not dep.training
    assert sum(isinstance(c, nn.BatchNorm2d) for _, c in dep.cells_and_names()) == n_bn - 4
    names = [p.name for p in dep.get_parameters()]
    assert len(names) == len(set(names)) and "patch_embed1.proj.bias" in names
    auto = convattn.create_model("resnet26", num_classes=10, deploy="auto", **small_instance_kwargs("resnet26")[0])
    assert auto.deploy_report == [] and not auto.form.deploy  # 'auto': nothing to re-parameterise is no error
    with pytest.raises(ValueError, match="no re-parameterisation"):
        convattn.create_model("resnet26", num_classes=10, deploy=True, layers=(1, 1, 1, 1))


def test_export_network_is_built_without_the_cpu_backend(tmp_path, monkeypatch):
    """export_model builds, per format, a fresh network in its export form (standard cells: no convattn.cpu cell,
    whose ops.Custom kernels no exported graph can carry; re-parameterised; export-safe for ONNX) with the same
    weights, and checks it against the network in this device's default form."""
    built = []
    real = export_mod._build

    def spy(*args, **kwargs):
        net, cfg, n = real(*args, **kwargs)
        built.append((kwargs, net.form, _cpu_cells(net), net.deploy_report))
        return net, cfg, n

    monkeypatch.setattr(export_mod, "_build", spy)
    kwargs, size = small_instance_kwargs("van_b0")
    res = export_model("van_b0", random_weights=True, num_classes=10, fmt="ALL", out_dir=str(tmp_path / "o"),
                       image_size=size[1:], model_kwargs=kwargs, log=quiet)
    assert [r.format for r in res] == ["MINDIR", "ONNX"] and all(r.max_abs_diff <= FP32_TOL for r in res)
    (ref_kwargs, ref_form, ref_cells, _), *exports = built
    assert "export_safe" not in ref_kwargs and not ref_form.export_safe and not ref_form.deploy
    assert bool(ref_cells) == ref_form.cpu_backend  # the reference: this device's default form
    assert len(exports) == 2
    for (kwargs, form, cells, switched), r in zip(exports, res):
        assert kwargs["cpu_backend"] is False and kwargs["deploy"] == "auto"
        assert cells == [] and not form.cpu_backend and form.deploy and switched, (r.format, form, cells)
        assert form.export_safe == (r.format == "ONNX") == kwargs["export_safe"]
        side = json.loads(open(r.sidecar).read())
        assert side["deploy_transforms"] == {"form": form.describe(), "switch_to_deploy": switched,
                                             "export_safe": form.export_safe, "cpu_backend": False}


# ---------------------------------------------------------------- every registered model, both formats


def test_export_plan_lists_registered_models_once():
    """Each single-format model is built from the same cell classes as its representative (same code path); each
    twin (tests/twins.py: exported only with -m slow) builds the identical test instance of a model exported by
    default in the same format(s)."""
    groups = BOTH + SLICE_GATHER + list(MINDIR_ONLY) + list(ONNX_ONLY)
    assert len(groups) == len(set(groups)) and not set(groups) - set(convattn.list_models()), groups
    built = {}

    def small(n):
        if n not in built:
            net, size = _small(n)
            built[n] = (network_signature(net), size)
        return built[n]

    for name, rep in {**MINDIR_ONLY, **ONNX_ONLY}.items():
        assert rep in (SLICE_GATHER if name in MINDIR_ONLY else BOTH), (name, rep)
        kinds = [{kind for _, kind in small(n)[0][0]} for n in (name, rep)]
        assert kinds[0] == kinds[1], (name, rep, kinds[0] ^ kinds[1])
    for name, parts in COMPOSITES.items():
        assert name in BOTH and all(p in BOTH and p not in COMPOSITES for p in parts), (name, parts)
        covered = set().union(*({kind for _, kind in small(p)[0][0]} for p in parts))
        missing = {kind for _, kind in small(name)[0][0]} - covered
        assert not missing, f"{name}: cells {missing} are exported by no default case: drop it from COMPOSITES"
    for name, twin in TWINS.items():
        assert twin not in TWINS and set(_export_formats(name)) <= set(_export_formats(twin)), (name, twin)
        assert small(name) == small(twin), f"{name}'s test instance is no longer {twin}'s: remove it from TWINS"


def _export_call(name, folder):
    """Write ``name``'s test checkpoint into ``folder``; the ``export_model`` arguments of its export, its input
    size (H, W)."""
    formats = _export_formats(name)
    small = _ckpt(name, folder / "w.ckpt")
    kwargs = dict(ckpt=str(folder / "w.ckpt"), fmt="ALL" if len(formats) == 2 else formats[0],
                  out_dir=str(folder / "out"), log=quiet, **small)
    return kwargs, small["image_size"]


_SLOW_EXPORTS = set(MINDIR_ONLY) | set(ONNX_ONLY) | set(COMPOSITES)  # variants: their representative's path


_CASES = {"export": export_model, "deploy_form": _deploy_form_case, "ascend_legal": _ascend_legal_case,
          "ascend_form_export": _ascend_form_export_case}


def _run_case(kind, *args, **kwargs):
    """One per-model case of this module (in a worker process; the execution mode restored after it)."""
    previous = ms.get_context("mode")
    try:
        return _CASES[kind](*args, **kwargs)
    finally:
        ms.set_context(mode=previous)


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cases")


@pytest.fixture(scope="module")
def worker_cases(cases_dir):
    """The compile-heavy per-model cases of this module's tests (the default exports, deploy forms, Ascend-legal
    conversions and Ascend-form exports) in two worker processes (tests/workers.py), the exports (the heaviest)
    first: ``{(kind, name): result or exception}``."""
    base = cases_dir
    calls = {}
    for name in convattn.list_models():
        if name not in _SLOW_EXPORTS:
            (base / name).mkdir()
            kwargs, _ = _export_call(name, base / name)
            calls[("export", name)] = (("export", name), kwargs)
    for name in sorted(set(ASCEND_FORM_EXPORTS) - ASCEND_FORM_SLOW):
        (base / f"ascend-{name}").mkdir()
        calls[("ascend_form_export", name)] = (("ascend_form_export", name, str(base / f"ascend-{name}")), {})
    for name in ASCEND_LEGAL_MODELS:
        calls[("ascend_legal", name)] = (("ascend_legal", name), {})
    for name in DEPLOY_FORM_MODELS:
        calls[("deploy_form", name)] = (("deploy_form", name), {})
    return run_in_workers(_run_case, calls)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_EXPORTS else n
                                  for n in convattn.list_models()])
def test_every_model_exports_and_verifies(name, tmp_path, request):
    formats = _export_formats(name)
    if name in _SLOW_EXPORTS:
        kwargs, hw = _export_call(name, tmp_path)
        results, out = export_model(name, **kwargs), tmp_path / "out"
    else:
        results = unwrap(request.getfixturevalue("worker_cases")[("export", name)])
        hw, out = small_instance_kwargs(name)[1][1:], request.getfixturevalue("cases_dir") / name / "out"
    assert [r.format for r in results] == formats
    for r in results:
        assert r.max_abs_diff <= FP32_TOL and r.tolerance == FP32_TOL
        assert os.path.getsize(r.path) == r.size_bytes > 0
        side = json.loads(open(r.sidecar).read())
        assert side["model"] == name and side["num_classes"] == 10
        assert side["input"] == {"name": "input", "shape": [1, 3] + list(hw),
                                 "dtype": "float32", "layout": "NCHW"}
        assert side["preprocessing"]["mean"] == list(convattn.get_model_cfg(name)["mean"])
        assert side["mindspore_version"] == ms.__version__
        assert len(side["weights_sha256"]) == 64 and side["verification"]["max_abs_diff"] == r.max_abs_diff
    suffix = {"MINDIR": ".mindir", "ONNX": ".onnx"}
    assert sorted(os.listdir(out)) == sorted(f"{name}{suffix[f]}{j}" for f in formats for j in ("", ".json"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SLICE_GATHER)
def test_slice_gather_networks_export_onnx(name, tmp_path):
    """Network-level ONNX of the slice-gather models (1-3 min each on 2 busy cores; the module-level test
    below covers the same formulations in the default run)."""
    small = _ckpt(name, tmp_path / "w.ckpt")
    res = export_model(name, ckpt=str(tmp_path / "w.ckpt"), fmt="ONNX", out_dir=str(tmp_path / "o"),
                       log=lambda *_: None, **small)
    assert res[0].max_abs_diff <= FP32_TOL


def _san_module(sa_type):
    from convattn.layers.san_attention import SAM
    return SAM(sa_type, 16, 4, 16, 4, 3)


@pytest.mark.parametrize("build", ["acmix", "san_pairwise", "san_patchwise"])
def test_slice_gather_modules_export_onnx(build, tmp_path):
    """ACmix (stride 2: subsample2d + gathers + conv path) and SAM (pairwise with the arange position grid,
    patchwise) built export-safe with the default form's weights, through mindspore.onnx.export and onnxruntime:
    equal to the default form."""
    import onnxruntime as ort
    from convattn.layers import ACmix, LocalWindowGather, build_target

    def make():
        module = ACmix(16, 16, kernel_att=3, head=4, stride=2) if build == "acmix" else _san_module(build[4:])
        # a trailing op of the top cell: when the graph's last node sits in a sub-cell (SAM's aggregation reshape),
        # mindspore.onnx.export 2.10 names the output wrongly ("Graph output (y) does not exist in the graph")
        return nn.SequentialCell([module, nn.ReLU()])

    net = make()
    with build_target(None, export_safe=True):  # the export-safe form, with the same weights
        safe = make()
    assert all(g.export_safe for _, g in safe.cells_and_names() if isinstance(g, LocalWindowGather))
    assert not _cpu_cells(safe)
    ms.load_param_into_net(safe, _state(net), strict_load=True)
    net.set_train(False)
    safe.set_train(False)
    x = np.random.default_rng(3).standard_normal((1, 16, 11, 10)).astype(np.float32)
    ref = net(ms.Tensor(x)).asnumpy()
    path = str(tmp_path / "m.onnx")
    ms.onnx.export(safe, ms.Tensor(x), file_name=path, input_names=["x"], output_names=["y"])
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": x})[0]
    assert out.shape == ref.shape and np.abs(out - ref).max() <= FP32_TOL, np.abs(out - ref).max()


def test_dynamic_batch_and_fp16(tmp_path):
    name = "resnet26"  # the export-safe stem pool must follow the batch size
    small, size = small_instance_kwargs(name)
    kw = dict(random_weights=True, num_classes=10, image_size=size[1:], model_kwargs=small, log=lambda *_: None)
    dyn = export_model(name, fmt="ONNX", out_dir=str(tmp_path / "dyn"), batch=2, dynamic_batch=True, **kw)
    side = json.loads(open(dyn[0].sidecar).read())
    assert side["input"]["shape"][0] is None and side["verification"]["batch_sizes"] == [2, 3]
    half = export_model(name, fmt="ALL", out_dir=str(tmp_path / "fp16"), fp16=True, **kw)
    for r in half:
        assert r.path.endswith(("_fp16.mindir", "_fp16.onnx")) and r.max_abs_diff <= r.tolerance
        assert json.loads(open(r.sidecar).read())["input"]["dtype"] == "float16"


# ---------------------------------------------------------------- bad input: clear errors, nothing written


@pytest.fixture
def van_small(tmp_path):
    small = _ckpt("van_b0", tmp_path / "b0.ckpt")
    return dict(ckpt=str(tmp_path / "b0.ckpt"), log=lambda *_: None, **small)


def test_unknown_format(tmp_path, van_small):
    with pytest.raises(ExportError, match="unknown export format 'TFLITE'"):
        export_model("van_b0", fmt="TFLITE", out_dir=str(tmp_path / "o"), **van_small)
    assert not (tmp_path / "o").exists()


def test_checkpoint_of_other_model_is_refused(tmp_path, van_small):
    with pytest.raises(ExportError, match="does not match van_b1"):
        export_model("van_b1", fmt="ONNX", out_dir=str(tmp_path / "o"), **van_small)
    kw = dict(van_small, model_kwargs={"depths": [2, 1, 1, 1]})
    with pytest.raises(ExportError, match=r"(?s)missing from the checkpoint.*block1\.1\."):
        export_model("van_b0", fmt="ONNX", out_dir=str(tmp_path / "o"), **kw)
    with pytest.raises(ExportError, match="shape mismatch"):
        export_model("van_b0", fmt="ONNX", out_dir=str(tmp_path / "o"), num_classes=7, **van_small)
    assert not (tmp_path / "o").exists()


def test_cli_takes_num_classes_in_model_kwargs(tmp_path, van_small, capsys):
    """Any create_model argument may come in --model_kwargs, num_classes included; a clash names --num_classes."""
    from convattn.deploy.cli import main

    h, w = van_small["image_size"]
    args = ["--model", "van_b0", "--ckpt", van_small["ckpt"], "--format", "ONNX", "--image_size", str(h), str(w),
            "--model_kwargs", json.dumps(dict(van_small["model_kwargs"], num_classes=10))]
    assert main(args + ["--num_classes", "7", "--out", str(tmp_path / "bad")]) == 1
    assert "disagree" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(args + ["--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    side = json.loads((tmp_path / "o" / "van_b0.onnx.json").read_text())
    assert side["num_classes"] == 10 and "num_classes" not in side["model_kwargs"]


def test_missing_or_unreadable_checkpoint(tmp_path, van_small):
    with pytest.raises(ExportError, match="--random_weights"):
        export_model("van_b0", fmt="ONNX", out_dir=str(tmp_path / "o"))
    bad = tmp_path / "junk.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="not a readable MindSpore checkpoint"):
        export_model("van_b0", ckpt=str(bad), fmt="ONNX", out_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_existing_readonly_output_is_not_overwritten(tmp_path, van_small):
    out = tmp_path / "o"
    out.mkdir()
    existing = out / "van_b0.onnx"
    existing.write_bytes(b"previous good export")
    existing.chmod(0o400)
    with pytest.raises(ExportError, match="already exists.*read-only|already exists"):
        export_model("van_b0", fmt="ONNX", out_dir=str(out), **van_small)
    assert existing.read_bytes() == b"previous good export" and sorted(os.listdir(out)) == ["van_b0.onnx"]
    res = export_model("van_b0", fmt="ONNX", out_dir=str(out), overwrite=True, **van_small)
    assert existing.stat().st_size == res[0].size_bytes > 1000
    assert sorted(os.listdir(out)) == ["van_b0.onnx", "van_b0.onnx.json"]


def test_output_folder_mode_is_kept(tmp_path, van_small):
    out = tmp_path / "o"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    export_model("van_b0", fmt="ONNX", out_dir=str(out), **van_small)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # mindspore.onnx.export chmods its own folder to 0700


def test_output_path_that_is_a_file(tmp_path, van_small):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="is a file|not a folder"):
        export_model("van_b0", fmt="ONNX", out_dir=str(blocker / "sub"), **van_small)
    with pytest.raises(ExportError, match="not a folder"):
        export_model("van_b0", fmt="ONNX", out_dir=str(blocker), **van_small)


def test_image_size_the_model_cannot_take(tmp_path, van_small):
    with pytest.raises(ExportError, match="two positive integers"):
        export_model("van_b0", fmt="ONNX", out_dir=str(tmp_path / "o"), **dict(van_small, image_size=(0, 64)))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name,built", [("swin_tiny", "Swin was built for 64x64 images"),
                                        ("pvt_tiny", "PVT was built for 64x64 images"),
                                        ("deit_tiny", r"built for img_size=\(32, 32\)")])
def test_fixed_size_models_refuse_other_sizes_before_writing(tmp_path, name, built):
    """Window / position-embedding models check the size with their own check_input_size, before any run."""
    small, (_, h, w) = small_instance_kwargs(name)
    net = convattn.create_model(name, num_classes=10, **small)
    net.check_input_size(h, w)
    with pytest.raises(ValueError, match=built):
        net.check_input_size(h + 16, w)
    with pytest.raises(ExportError, match=f"{name} cannot take {h + 16}x{w} inputs: .*{built}"):
        export_model(name, random_weights=True, num_classes=10, fmt="ALL", out_dir=str(tmp_path / "o"),
                     image_size=(h + 16, w), model_kwargs=small, log=lambda *_: None)
    assert not (tmp_path / "o").exists()


def test_failed_verification_keeps_nothing_and_removes_nothing(tmp_path, van_small, monkeypatch):
    out = tmp_path / "o"
    good = export_model("van_b0", fmt="ONNX", out_dir=str(out), **van_small)[0]
    before = open(good.path, "rb").read()
    real = export_mod._run_artifact
    monkeypatch.setattr(export_mod, "_run_artifact", lambda f, p, x: real(f, p, x) + 1e-3)
    with pytest.raises(ExportVerificationError, match="differs from the network by 0.001"):
        export_model("van_b0", fmt="ALL", out_dir=str(out), overwrite=True, **van_small)
    assert open(good.path, "rb").read() == before
    assert sorted(os.listdir(out)) == ["van_b0.onnx", "van_b0.onnx.json"]  # no MINDIR, no temporary folder


def test_cli_reports_errors(tmp_path, capsys):
    from convattn.deploy.cli import main

    assert main(["--model", "van_b0", "--random_weights", "--format", "PB", "--out", str(tmp_path / "o")]) == 1
    assert "unknown export format 'PB'" in capsys.readouterr().err
    assert main(["--model", "van_b9", "--random_weights", "--out", str(tmp_path / "o")]) == 1
    assert "Unknown model 'van_b9'" in capsys.readouterr().err
    assert main(["--model", "van_b0", "--random_weights", "--model_kwargs", "[1]", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
