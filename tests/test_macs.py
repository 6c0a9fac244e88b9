"""One MAC count: every attention cell declares the multiply-adds no Conv2d/Dense hook sees, and the counter's total
for one layer of each family equals a hand calculation (convolutions + dense layers + attention products)."""
import pytest

import convattn
from convattn.bench.macs import count_macs
from convattn.layers import XVolution
from convattn.layers.acmix import ACmix
from convattn.layers.dynamic_attention import DynamicAttention
from convattn.layers.san_attention import SAM
from convattn.layers.window_attention import WindowAttention
from convattn.models.pvt import Attention as PVTAttention


def test_acmix_local_attention():
    # 8 -> 8 channels, 2 heads (head_dim 4), 3x3 attention window, 6x6 map, stride 1
    c, hw, kk = 8, 36, 9
    m = count_macs(ACmix(8, 8, kernel_att=3, head=2, attn_impl="fast"), (1, 8, 6, 6))
    projections = 3 * c * c * hw + 4 * 2 * hw     # conv1-3 (1x1) + conv_p (2 -> head_dim, on the position grid)
    conv_path = 9 * (3 * 2) * (4 * hw) + c * hw * 9 * 9   # fc (3*heads -> 9) + dep_conv (groups head_dim, 9 in)
    attention = 2 * c * kk * hw                   # q.(k + pe_i - pe_j) and sum_j a_ij v_j
    assert m["extra"] == attention
    assert m["total"] == projections + conv_path + attention


@pytest.mark.parametrize("impl", ["unfold", "auto"])
def test_san_aggregation(impl):
    # patchwise SAM: in 16, rel 2, out 8, share 2 -> 4 weight channels, 3x3 footprint, 5x5 map
    hw, kk, rel, out, n_w = 25, 9, 2, 8, 4
    m = count_macs(SAM("patchwise", 16, rel, out, share_planes=2, kernel_size=3, attn_impl=impl), (1, 16, 5, 5))
    projections = (rel + rel + out) * 16 * hw
    gamma = rel * (kk + 1) * n_w * hw + n_w * kk * n_w * hw   # 1x1 rel(k^2+1) -> n_w, 1x1 n_w -> k^2 n_w
    aggregation = out * kk * hw
    assert m["extra"] == aggregation
    assert m["total"] == projections + gamma + aggregation


def test_pvt_spatial_reduction_attention():
    # dim 16, 2 heads, sr 2 on a 4x4 token grid: 16 queries, 4 keys
    n, mk, c = 16, 4, 16
    m = count_macs(PVTAttention(16, 2, qkv_bias=True, sr_ratio=2, resolution=(4, 4)), (1, n, c))
    dense = n * c * c + mk * 2 * c * c + n * c * c    # q, kv (reduced tokens), proj
    sr = mk * c * c * 4                               # the 2x2 stride-2 reduction conv
    assert m["extra"] == 2 * n * mk * c               # q k^T and attn v
    assert m["total"] == dense + sr + 2 * n * mk * c


def test_deit_and_swin_attention():
    n, c = 10, 12
    m = count_macs(DynamicAttention(c, 3), (1, n, c))
    assert m["extra"] == 2 * n * n * c and m["total"] == 4 * n * c * c + 2 * n * n * c
    # Swin: a 4x4 map in four 2x2 windows (4 tokens each)
    m = count_macs(WindowAttention(c, 2, 3), (1, 4, 4, c))
    assert m["extra"] == 4 * 2 * 4 * 4 * c and m["total"] == 4 * 16 * c * c + 4 * 2 * 4 * 4 * c


@pytest.mark.parametrize("form", ["attention", "dense"])
def test_xvolution_pssa_and_sa(form):
    # 6 -> 6 channels, 3x3, 4 directions, 5x5 map
    c, hw, d = 6, 25, 4
    m = count_macs(XVolution(c, c, 3, pssa_form=form), (1, c, 5, 5))
    conv = c * c * 9 * hw
    norm = 2 * c * hw         # pssa_norm='rms': sum_c x^2 and x / rms at every pixel
    if form == "attention":   # products, per-direction channel sums, weighted sum of neighbours (all declared)
        assert m["extra"] == d * c * hw + d * c * hw + d * c * hw + norm
        assert m["total"] == conv + d * c * hw + 2 * d * c * hw + norm
    else:                     # products + a dense 3x3 conv over the D*C products
        assert m["total"] == conv + d * c * c * 9 * hw + d * c * hw + norm
    m = count_macs(XVolution(c, c, 3, pssa_form=form, pssa_norm="none"), (1, c, 5, 5))
    assert m["total"] == (conv + 3 * d * c * hw if form == "attention" else conv + d * c * c * 9 * hw + d * c * hw)
    m = count_macs(XVolution(c, c, 3, attn="sa", num_heads=2), (1, c, 5, 5))
    assert m["total"] == conv + 3 * c * c * hw + 2 * c * hw * hw


def test_acmix_pvt_conv_path_is_the_only_overhead():
    """ACmix-PVT (shared k/v): fc + dep_conv over PVT; the 'full' form adds the full-grid kv projection."""
    small = dict(img_size=64, depths=(1, 1, 1, 1), num_classes=10)
    base = count_macs(convattn.create_model("pvt_tiny", **small), (1, 3, 64, 64))["total"]
    shared = count_macs(convattn.create_model("acmix_pvt_tiny", **small), (1, 3, 64, 64))["total"]
    full = count_macs(convattn.create_model("acmix_pvt_tiny", acmix_kv="full", **small), (1, 3, 64, 64))["total"]
    dims, grids, heads = (64, 128, 320, 512), (256, 64, 16, 4), (1, 2, 5, 8)
    conv_path = sum(9 * 3 * h * n * (c // h) + c * n * 81 for c, n, h in zip(dims, grids, heads))
    assert shared - base == conv_path
    assert full - shared == sum(2 * c * c * n for c, n in zip(dims, grids))   # kv again on every stage's grid


def test_model_table_lists_each_selectable_form(monkeypatch):
    """The README table has a row per kept form (X-volution dense PSSA, ACmix-PVT full kv, ReLU DeiT without RPE)."""
    from convattn.bench import model_table

    calls = []
    monkeypatch.setattr(model_table, "profile_model",
                        lambda name, **kw: calls.append((name, kw)) or {"params_m": 1.0, "trainable_m": 1.0,
                                                                          "gmacs": 2.0})
    rows = model_table.model_rows(["xvolution_resnet34", "acmix_pvt_tiny", "deit_tiny_relu", "resnet34"])
    assert calls == [("xvolution_resnet34", {}), ("xvolution_resnet34", {"pssa_form": "dense"}),
                     ("acmix_pvt_tiny", {}), ("acmix_pvt_tiny", {"acmix_kv": "full"}),
                     ("deit_tiny_relu", {}), ("deit_tiny_relu", {"rel_pos_embed": False}), ("resnet34", {})]
    assert rows[1]["model"] == "xvolution_resnet34 pssa_form='dense'" and rows[1]["top1"] is None
    assert "`acmix_pvt_tiny acmix_kv='full'`" in model_table.markdown_table(rows)
