"""The fused CPU softmax attention (``SoftmaxAttention``'s fused form): the values and gradients of the standard
form and of a float64 reference, packed ``qkv`` and split ``q``/``kv``, with and without an addend; the models
that use it; their standard and export forms do not."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from convattn.cpu.attention import FusedSoftmaxAttention
from convattn.cpu.runtime import runtime
from convattn.layers.softmax_attention import SoftmaxAttention
from convattn.layers.targets import build_target
from cell_grads import assert_model_runs_fused

pytestmark = pytest.mark.skipif(not runtime().available or not runtime().gemm,
                                reason="CPU backend or its private GEMM library unavailable")


def _attention64(q, kv, addend, heads, scale):
    """float64 reference: output (G, N, C) and the vjp for dout -> (dq, dkv, daddend)."""
    q = q.astype(np.float64)
    packed = kv is None
    g, n = q.shape[:2]
    c = q.shape[2] // 3 if packed else q.shape[2]
    d = c // heads
    src = q if packed else kv.astype(np.float64)
    m = src.shape[1]
    off_q, off_k, off_v = (0, c, 2 * c) if packed else (0, 0, c)
    qh = q[..., off_q:off_q + c].reshape(g, n, heads, d).transpose(0, 2, 1, 3)
    kh = src[..., off_k:off_k + c].reshape(g, m, heads, d).transpose(0, 2, 1, 3)
    vh = src[..., off_v:off_v + c].reshape(g, m, heads, d).transpose(0, 2, 1, 3)
    s = scale * qh @ kh.transpose(0, 1, 3, 2)
    if addend is not None:
        a = addend.shape[0]
        s = (s.reshape(g // a, a, heads, n, m) + addend.astype(np.float64)).reshape(g, heads, n, m)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = (p @ vh).transpose(0, 2, 1, 3).reshape(g, n, c)

    def vjp(dout):
        do = dout.astype(np.float64).reshape(g, n, heads, d).transpose(0, 2, 1, 3)
        dp = do @ vh.transpose(0, 1, 3, 2)
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        dqh, dkh, dvh = scale * ds @ kh, scale * ds.transpose(0, 1, 3, 2) @ qh, p.transpose(0, 1, 3, 2) @ do
        back = lambda t, rows: t.transpose(0, 2, 1, 3).reshape(g, rows, c)  # noqa: E731
        dq, dk, dv = back(dqh, n), back(dkh, m), back(dvh, m)
        if packed:
            dsrc = (np.concatenate([dq, dk, dv], -1),)
        else:
            dsrc = (dq, np.concatenate([dk, dv], -1))
        dadd = None
        if addend is not None:
            a = addend.shape[0]
            dadd = ds.reshape(g // a, a, heads, n, m).sum(0)
            if addend.shape[1] == 1:
                dadd = dadd.sum(1, keepdims=True)
        return dsrc, dadd

    return out, vjp


class _Loss(nn.Cell):
    def __init__(self, cell, packed, with_addend):
        super().__init__()
        self.cell, self.packed, self.with_addend = cell, packed, with_addend

    def construct(self, q, kv, addend, dy):
        out = self.cell(q, None if self.packed else kv, addend if self.with_addend else None)
        return (out * dy).sum()


def _run(cell, q, kv, addend, dy):
    packed, with_addend = kv is None, addend is not None
    t = lambda a: ms.Tensor(a) if a is not None else ms.Tensor(np.zeros((1,), np.float32))  # noqa: E731
    y = cell(ms.Tensor(q), None if packed else ms.Tensor(kv), ms.Tensor(addend) if with_addend else None)
    grads = ms.grad(_Loss(cell, packed, with_addend), grad_position=(0, 1, 2))(t(q), t(kv), t(addend), ms.Tensor(dy))
    return y.asnumpy(), [g.asnumpy() for g in grads]


def _attention(heads, head_dim, cpu_backend, **kwargs):
    """A SoftmaxAttention built for the CPU target with or without the CPU backend."""
    with build_target("CPU", cpu_backend=cpu_backend):
        return SoftmaxAttention(heads, head_dim, **kwargs)


# (G, N, M, C, heads, addend shape): Swin windows (49 tokens, mask + bias summed: (nW, heads, N, N)), a bias
# shared by all groups, a mask-only addend (nW, 1, N, N), DeiT-like without addend, PVT-like split with M < N
CASES = [("packed", 8, 49, 49, 96, 3, (4, 3, 49, 49)), ("packed", 6, 10, 10, 32, 4, (1, 4, 10, 10)),
         ("packed", 4, 7, 7, 24, 2, (2, 1, 7, 7)), ("packed", 2, 37, 37, 48, 6, None),
         ("split", 2, 50, 13, 64, 1, None), ("split", 3, 20, 9, 40, 5, (3, 5, 20, 9))]


@pytest.mark.parametrize("layout,g,n,m,c,heads,addend_shape", CASES)
def test_fused_attention_matches_reference_and_standard_form(ms_mode, layout, g, n, m, c, heads, addend_shape):
    rng = np.random.default_rng(1)
    packed = layout == "packed"
    q = rng.standard_normal((g, n, 3 * c if packed else c)).astype(np.float32)
    kv = None if packed else rng.standard_normal((g, m, 2 * c)).astype(np.float32)
    addend = None
    if addend_shape is not None:
        addend = rng.standard_normal(addend_shape).astype(np.float32)
        addend[..., ::3] -= 100.0  # masked keys, as Swin's shifted-window mask
    dy = rng.standard_normal((g, n, c)).astype(np.float32)
    scale = (c // heads) ** -0.5
    fused, standard = (_attention(heads, c // heads, cpu_backend=f) for f in (True, False))
    assert fused.fused and not standard.fused
    assert isinstance(fused.kernel, FusedSoftmaxAttention) and standard.kernel is None
    ref, vjp = _attention64(q, kv, addend, heads, scale)
    dsrc, dadd = vjp(dy)
    (y, grads), (y_std, grads_std) = _run(fused, q, kv, addend, dy), _run(standard, q, kv, addend, dy)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(y, y_std, rtol=0, atol=2e-5)
    expected = list(dsrc) + ([np.zeros((1,), np.float32)] if packed else []) + [dadd]
    for got, std, want in zip(grads, grads_std, expected):
        if want is None:
            continue
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
        np.testing.assert_allclose(got, std, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_fused_attention_only_for_the_cpu_target_and_not_with_attention_dropout():
    assert SoftmaxAttention(2, 8).fused  # outside a build: the default form of the device (the CPU)
    assert _attention(2, 8, None).fused
    assert not _attention(2, 8, None, attn_drop=0.1).fused
    assert not _attention(2, 8, False).fused and _attention(2, 8, False).kernel is None
    for target, safe in (("GPU", False), ("Ascend", False), ("CPU", True)):
        with build_target(target, export_safe=safe):
            cell = SoftmaxAttention(2, 8)
        assert not cell.fused and cell.kernel is None
    with pytest.raises(AttributeError):
        cell.fused = True  # read-only: decided at construction


@pytest.mark.parametrize("name", ["swin_tiny", "deit_tiny", "pvt_tiny", "acmix_swin_tiny"])
def test_models_attend_through_the_fused_kernel_and_their_standard_form_does_not(pynative, name):
    assert_model_runs_fused(name, SoftmaxAttention)
