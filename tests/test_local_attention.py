"""Blocked window attention (ACmix attn_impl='fast') against the official unfold formulation: forward and gradients.

The official-fixture parity of the ACmix module runs through the fast path (the GPU/Ascend default) in
tests/test_acmix.py; here the two formulations are compared on random weights for the shapes the fixtures do not
cover (ragged blocks, stride 2, both halo cuts) and the mask is checked against its definition.
"""
import numpy as np
import pytest
import mindspore as ms

from convattn.layers import ACmix
from convattn.layers.local_attention import BlockedWindowAttention, block_split, window_mask


def acmix_twins(stride, block=8, kernel_att=7, seed=0, impl="fast"):
    """(official 'unfold' ACmix, ``impl`` ACmix) with equal weights, q and positions sharpened so the attention
    is far from uniform (used by tests/test_fused_window.py too)."""
    ref = ACmix(16, 32, kernel_att, head=4, stride=stride, attn_impl="unfold")
    fast = ACmix(16, 32, kernel_att, head=4, stride=stride, attn_impl=impl, attn_block=block)
    rng = np.random.default_rng(seed)
    for (_, p1), (_, p2) in zip(ref.parameters_and_names(), fast.parameters_and_names()):
        val = p1.asnumpy()
        if p1.name.endswith("conv1.weight") or p1.name.endswith("conv_p.weight"):
            val = val + rng.standard_normal(val.shape).astype(np.float32)  # sharper, non-uniform attention
        p1.set_data(ms.Tensor(val))
        p2.set_data(ms.Tensor(val))
    return ref, fast


# (stride, block, map): reshape halo cut with a ragged edge; stride 2 on an odd map; the unfold halo cut
# (block 2 < window overhang 6); one block covering the map.
CASES = [(1, 4, (10, 13)), (2, 4, (11, 9)), (1, 2, (9, 8)), (1, 8, (7, 7))]


@pytest.mark.parametrize("stride,block,hw", CASES, ids=[f"s{c[0]}-b{c[1]}-{c[2][0]}x{c[2][1]}" for c in CASES])
def test_fast_equals_unfold_forward_and_gradients(stride, block, hw):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref, fast = acmix_twins(stride, block)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 16) + hw).astype(np.float32))
    a, b = ref(x).asnumpy(), fast(x).asnumpy()
    assert a.shape == b.shape == (2, 32, -(-hw[0] // stride), -(-hw[1] // stride))
    err = float(np.abs(a - b).max())
    assert err <= 1e-5 * max(1.0, float(np.abs(a).max())), err

    def grads(net):
        fn = ms.value_and_grad(lambda inp: (net(inp) ** 2).sum(), 0, net.trainable_params())
        _, (gx, gw) = fn(x)
        return [gx.asnumpy()] + [g.asnumpy() for g in gw]

    # conv_p.bias has an exactly-zero true gradient (pe_i - pe_j cancels it) that both forms see as float32
    # cancellation noise, so every gradient is compared at the scale of the largest one
    ga_all, gb_all = grads(ref), grads(fast)
    scale = max(1.0, max(float(np.abs(g).max()) for g in ga_all))
    for name, ga, gb in zip(["input"] + [p.name for p in ref.trainable_params()], ga_all, gb_all):
        assert float(np.abs(ga - gb).max()) <= 1e-5 * scale, (name, float(np.abs(ga - gb).max()), scale)


def test_blocked_attention_graph_mode_matches_dense_reference():
    """The cell alone in GRAPH mode against a NumPy sliding-window softmax with reflection padding."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((3, 4, 9, 11)).astype(np.float32) for _ in range(3))
    got = BlockedWindowAttention(5, 1, 2, block=4)(ms.Tensor(q), ms.Tensor(k), ms.Tensor(v)).asnumpy()
    kp = np.pad(k, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    vp = np.pad(v, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    want = np.zeros_like(q)
    for i in range(9):
        for j in range(11):
            kw, vw = kp[:, :, i:i + 5, j:j + 5].reshape(3, 4, 25), vp[:, :, i:i + 5, j:j + 5].reshape(3, 4, 25)
            logit = np.einsum("nd,ndt->nt", q[:, :, i, j], kw)
            p = np.exp(logit - logit.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            want[:, :, i, j] = np.einsum("nt,ndt->nd", p, vw)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    assert float(np.abs(got - want).max()) <= 1e-5


def test_window_mask_and_block_split():
    m = window_mask(2, 3, 3, 2)  # stride 2: halo 2*(b-1)+3
    assert m.shape == (6, 5 * 7)
    assert ((m == 0).sum(1) == 9).all()  # every query sees exactly its k*k window
    first = (m[0].reshape(5, 7) == 0)
    assert first[:3, :3].all() and first.sum() == 9
    last = (m[5].reshape(5, 7) == 0)
    assert last[2:5, 4:7].all() and last.sum() == 9
    assert block_split(56, 8) == (7, 8) and block_split(28, 8) == (4, 7) and block_split(7, 8) == (1, 7)
    assert block_split(29, 8) == (4, 8)


def test_bad_attn_impl():
    with pytest.raises(ValueError, match="attn_impl must be 'auto'"):
        ACmix(16, 32, attn_impl="im2col")
    with pytest.raises(ValueError, match="block must be >= 1"):
        BlockedWindowAttention(7, 1, 3, block=0)
