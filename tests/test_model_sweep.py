"""Every registered model through the same checks (as timm's model tests): each form builds and records itself
truly, the forms share their parameters, the export-safe form holds only exportable operators, and a fresh network
gives finite, bounded outputs in evaluation and training mode.

Each model runs as its small instance (``convattn.models.small_instance_kwargs``), which keeps
every block type of the full network. One representative per family is in the ``quick`` tier.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

import convattn
from convattn.deploy import ascend_grouped_conv_report
from convattn.layers import LocalWindowGather
from convattn.layers.targets import TARGETS
from convattn.models import small_instance_kwargs

MODELS = convattn.list_models()
QUICK = {"acmix_resnet26", "acmix_swin_tiny", "acmix_pvt_tiny", "acmix_san10", "san10_pairwise", "san10_patchwise",
         "van_b0", "xvolution_resnet34", "deit_tiny_relu", "swin_tiny_dw", "resnet26", "pvt_tiny", "swin_tiny"}
NUM_CLASSES = 7
# every model, X-volution included since its PSSA products are bounded (issue #29, tests/test_xvolution_stability.py)
LOGIT_BOUND = {}


def _params(name):
    return [pytest.param(m, marks=pytest.mark.quick) if m in QUICK else m for m in MODELS]


def _small(name, **form):
    kwargs, size = small_instance_kwargs(name)
    net = convattn.create_model(name, num_classes=NUM_CLASSES, **form, **kwargs)
    return net, tuple(size)


def _cpu_cells(net):
    return sorted({type(c).__name__ for _, c in net.cells_and_names() if type(c).__module__.startswith("convattn.cpu")})


def _unexportable(net):
    """Cells whose operators ``mindspore.onnx.export`` lacks: exact GELU (Erf), padded MaxPool
    (MaxPool3DWithArgmax), the Im2Col / MirrorPad gather, the CPU backend's Custom kernels."""
    bad = []
    for name, cell in net.cells_and_names():
        if type(cell).__module__.startswith("convattn.cpu"):
            bad.append(f"{name}: {type(cell).__name__}")
        elif isinstance(cell, nn.GELU) and getattr(cell, "approximate", "") == "none":
            bad.append(f"{name}: exact nn.GELU (Erf)")
        elif isinstance(cell, nn.MaxPool2d) and getattr(cell, "use_pad", False):
            bad.append(f"{name}: padded nn.MaxPool2d")
        elif isinstance(cell, LocalWindowGather) and not cell.export_safe:
            bad.append(f"{name}: Im2Col gather")
    return bad


@pytest.mark.parametrize("name", _params("forms"))
def test_every_form_builds_and_records_itself(name):
    nets = {t: _small(name, target=t)[0] for t in TARGETS}
    safe, _ = _small(name, target="CPU", export_safe=True)
    for t, net in nets.items():
        assert net.target == t and net.form.target == t and not net.form.export_safe and not net.form.deploy
        assert net.default_cfg["architecture"] == name
    for t in ("GPU", "Ascend"):
        assert not nets[t].form.cpu_backend and _cpu_cells(nets[t]) == [], t
    from convattn.cpu.runtime import runtime

    if runtime().available:  # the CPU form runs the backend wherever it is ready
        assert nets["CPU"].form.cpu_backend and _cpu_cells(nets["CPU"]), name
    assert safe.form.export_safe and not safe.form.cpu_backend
    assert _unexportable(safe) == []
    assert ascend_grouped_conv_report(nets["Ascend"]) == []
    # one set of parameters: the same names and element counts in every form (shapes may differ: dep_conv)
    ref = {p.name: int(np.prod(p.shape)) for p in nets["CPU"].get_parameters()}
    for net in list(nets.values()) + [safe]:
        assert {p.name: int(np.prod(p.shape)) for p in net.get_parameters()} == ref
    assert sum(ref.values()) > 0


@pytest.mark.parametrize("name", _params("finite"))
def test_fresh_network_is_finite_in_eval_and_train(name, pynative):
    net, size = _small(name)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2,) + size).astype(np.float32))
    bound = LOGIT_BOUND.get(name, 1e3)
    for train in (False, True):
        net.set_train(train)
        out = net(x).asnumpy()
        assert out.shape == (2, NUM_CLASSES), (name, train, out.shape)
        assert np.isfinite(out).all(), (name, train)
        assert np.abs(out).max() < bound, (name, train, float(np.abs(out).max()))
