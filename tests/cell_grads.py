"""A cell's output and its gradients (input first, then its trainable parameters) for the loss ``sum(y * dy)``:
the comparison the fused-kernel tests make between a fused cell and the MindSpore cell it replaces."""
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


def assert_model_runs_fused(name: str, cls) -> None:
    """The small CPU-built ``name`` holds ``cls`` cells, all in their fused form, and ``set_fused_kernels(net,
    False)`` (what export does) switches every one of them off."""
    import convattn
    from convattn.layers import set_fused_kernels
    from convattn.models import small_instance_kwargs

    net = convattn.create_model(name, num_classes=10, target="CPU", **small_instance_kwargs(name)[0])
    cells = [cell for _, cell in net.cells_and_names() if isinstance(cell, cls)]
    assert cells and all(cell.fused for cell in cells), name
    set_fused_kernels(net, False)
    assert not any(cell.fused for cell in cells), name
