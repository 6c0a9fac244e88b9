"""CPU-fast formulations of the transformer blocks, checked on the operators MindSpore actually runs (the speed
harness's op profile): no StridedSlice copies for the q/k/v split (a Split instead), no slice + concat cyclic shift
in the plain Swin block (one token gather each way). Values are checked by the parity tests of each family."""
import numpy as np
import pytest
import mindspore as ms

from convattn.bench.harness import op_profile


@pytest.fixture
def graph_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)  # the profiler reports the kernels of a compiled graph
    yield
    ms.set_context(mode=previous)


def _op_types(cell, *shape):
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    cell.set_train(False)
    return {p["op_type"] for p in op_profile(lambda: cell(x).asnumpy(), steps=1)}


def _attention_ops(build, fused, *shape):
    """The op types the cell ``build()`` runs when built with its attention (and the other cells) in the CPU
    backend's fused form or in the standard form."""
    from convattn.cpu.runtime import runtime
    from convattn.layers import build_target, decide_form

    if fused and (not decide_form("CPU").cpu_backend or not runtime().gemm):
        pytest.skip("fused CPU kernels or the private GEMM library unavailable")
    with build_target("CPU", cpu_backend=fused) as form:
        cell = build()
    assert form.cpu_backend == fused
    return _op_types(cell, *shape)


@pytest.mark.parametrize("fused", [True, False])
def test_vit_attention_splits_qkv_without_strided_slice(graph_mode, fused):
    from convattn.layers import DynamicAttention

    ops_run = _attention_ops(lambda: DynamicAttention(32, 4, True), fused, 2, 17, 32)
    if fused:  # the fused attention reads q, k, v in place: no split, transpose or batched product at all
        assert not {"Split", "StridedSlice", "Transpose", "BatchMatMul", "Softmax"} & ops_run, ops_run
    else:
        assert "Split" in ops_run and "StridedSlice" not in ops_run, ops_run


@pytest.mark.parametrize("fused", [True, False])
def test_pvt_attention_splits_kv_without_strided_slice(graph_mode, fused):
    from convattn.models.pvt import Attention

    ops_run = _attention_ops(lambda: Attention(32, 2, True, sr_ratio=2, resolution=(8, 8)), fused, 2, 64, 32)
    if fused:
        assert not {"Split", "StridedSlice", "BatchMatMul", "Softmax"} & ops_run, ops_run
    else:
        assert "Split" in ops_run and "StridedSlice" not in ops_run, ops_run


def test_swin_block_gathers_windows_instead_of_slicing(graph_mode):
    from convattn.models.swin import SwinTransformerBlock

    ops_run = _op_types(SwinTransformerBlock(16, (8, 8), 2, window_size=4, shift_size=2), 2, 64, 16)
    assert "Gather" in ops_run and not {"StridedSlice", "Concat"} & ops_run, ops_run
