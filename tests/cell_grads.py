"""A cell's output and its gradients (input first, then its trainable parameters) for the loss ``sum(y * dy)``:
the comparison the fused-kernel tests make between a fused cell and the MindSpore cell it replaces; and the
network-level checks: a model built with the CPU backend holds the fused cells, and its standard twin (the same
model built with ``cpu_backend=False``, as export builds it) holds none and computes the same outputs."""
import numpy as np
import mindspore as ms
from mindspore import nn


class _Loss(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, dy):
        return (self.cell(x) * dy).sum()


def value_and_grads(cell, x, dy):
    """``(y, [dx, d(param) ...])`` as NumPy arrays for NumPy inputs ``x`` and ``dy``."""
    y = cell(ms.Tensor(x)).asnumpy()
    gx, gw = ms.grad(_Loss(cell), grad_position=0, weights=cell.trainable_params())(ms.Tensor(x), ms.Tensor(dy))
    return y, [gx.asnumpy()] + [g.asnumpy() for g in gw]


def is_cpu_backend_cell(cell) -> bool:
    """The cell comes from the CPU backend (:mod:`convattn.cpu`)."""
    return type(cell).__module__.split(".")[:2] == ["convattn", "cpu"]


def cpu_backend_cells(net):
    """Names of the cells of ``net`` that come from the CPU backend."""
    return [name for name, cell in net.cells_and_names() if is_cpu_backend_cell(cell)]


def build_small(name: str, **form):
    """The small test instance of ``name`` (``small_instance_kwargs``, 10 classes) built in ``form`` (``target``,
    ``cpu_backend``, ``export_safe``: :func:`convattn.create_model`'s arguments)."""
    import convattn

    from convattn.models import small_instance_kwargs

    return convattn.create_model(name, num_classes=10, **small_instance_kwargs(name)[0], **form)


def standard_twin(net, name: str, **form):
    """``name`` built again in the standard form (CPU target, ``cpu_backend=False``; ``form`` overrides) with
    ``net``'s weights: every parameter name and shape must match (fused cells keep the standard ones)."""
    twin = build_small(name, **{"target": "CPU", "cpu_backend": False, **form})
    not_loaded, unused = ms.load_param_into_net(twin, {p.name: p for p in net.get_parameters()})
    assert not not_loaded and not unused, (name, not_loaded, unused)
    return twin


def assert_same_outputs(net, twin, name: str, atol: float = 1e-4, seed: int = 0):
    """``net`` and ``twin`` (eval mode) give the same logits on a random batch of ``name``'s small input size, to
    ``atol`` of the logits' scale (at least 1)."""
    import convattn

    size = tuple(convattn.models.small_instance_kwargs(name)[1])
    x = ms.Tensor(np.random.default_rng(seed).standard_normal((2,) + size).astype(np.float32))
    net.set_train(False)
    twin.set_train(False)
    y, y_std = net(x).asnumpy(), twin(x).asnumpy()
    np.testing.assert_allclose(y, y_std, rtol=0, atol=atol * max(1.0, float(np.abs(y_std).max())))
    return y


def assert_model_runs_fused(name: str, cls) -> None:
    """The small CPU-built ``name`` holds ``cls`` cells, all in their fused form; the same model built without the
    CPU backend (``cpu_backend=False``, what export builds) has the standard cell at each of their names, no cell
    of the CPU backend and, with the same weights, the same outputs; its export-safe form has none either."""
    net = build_small(name, target="CPU")
    assert net.form.cpu_backend, (name, net.form)
    cells = {n: cell for n, cell in net.cells_and_names() if isinstance(cell, cls)}
    assert cells and all(cell.fused for cell in cells.values()), name
    twin = standard_twin(net, name)
    assert not twin.form.cpu_backend and cpu_backend_cells(twin) == [], name
    twin_cells = dict(twin.cells_and_names())
    for n, cell in cells.items():
        std = twin_cells[n]
        assert not is_cpu_backend_cell(std) and not getattr(std, "fused", False), (name, n, type(std))
        assert isinstance(cell, type(std)), (name, n, type(cell), type(std))  # the fused cell is the one it replaces
    assert_same_outputs(net, twin, name)
    export = build_small(name, target="CPU", export_safe=True)
    assert export.form.export_safe and not export.form.cpu_backend
    assert cpu_backend_cells(export) == [] and not any(getattr(c, "fused", False) for _, c in export.cells_and_names())
