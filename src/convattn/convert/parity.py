"""Parity with the official code: every fixture of the reference folder (outputs of the official PyTorch code on
seeded random weights) loaded through the converter mapping and compared in eval mode, in GRAPH and PYNATIVE mode.

``scripts/parity_table.py`` prints the parity table of docs/convert.md from :func:`parity_rows` (and writes it between
that page's ``parity-table`` markers); the tests in ``tests/test_{van,acmix,swin,san}.py`` assert the same comparisons.
Tolerance (the fixture README's rule): ``max|ours - official| <= 1e-5 * max(1, max|official|)``.
"""
import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

__all__ = ["FIXTURES", "reference_root", "tolerance", "run_fixture", "parity_rows", "markdown_table"]


def reference_root() -> Path:
    """The official-code fixtures: ``../shared/reference`` beside the repository, or ``$CONVATTN_REFERENCE_DIR``."""
    default = Path(__file__).resolve().parents[3].parent / "shared" / "reference"
    return Path(os.environ.get("CONVATTN_REFERENCE_DIR", default))


def tolerance(out: np.ndarray) -> float:
    return 1e-5 * max(1.0, float(np.abs(out).max()))


def _van(kind):
    def build():
        from ..layers import LKA, LKAAttention
        from ..models.van import Block
        return {"lka": lambda: LKA(64), "attention": lambda: LKAAttention(64),
                "block": lambda: Block(64, mlp_ratio=8.0)}[kind]()
    return build


def _acmix(depthwise: bool, **kwargs):
    def build():
        from ..layers import ACmix
        return ACmix(depthwise_conv=depthwise, **kwargs)
    return build


def _model(name: str, **kwargs):
    def build():
        from ..models import create_model
        return create_model(name, **kwargs)
    return build


def _swin(kind):
    def build():
        from ..models.swin import BasicLayer, SwinTransformerBlock
        if kind == "block":
            return SwinTransformerBlock(96, (14, 14), 3, window_size=7, shift_size=3, acmix=True)
        return BasicLayer(96, (14, 14), 2, 3, 7, downsample=True, acmix=True)
    return build


def _san(kind: str, *args, **kwargs):
    def build():
        from ..layers.san_attention import SAM
        from ..models.san import Bottleneck
        return (SAM if kind == "sam" else Bottleneck)(*args, **kwargs)
    return build


_S1 = dict(in_planes=64, out_planes=64, kernel_att=7, head=4, kernel_conv=3, stride=1)
_S2 = dict(_S1, stride=2)
_K5 = dict(in_planes=32, out_planes=64, kernel_att=5, head=8, kernel_conv=3)

# (fixture file, official module, our module as built, converter rules (None: the model's default_cfg), builder);
# constructors as the fixture README lists them, the same as the parity tests.
FIXTURES: List[Tuple[str, str, str, Optional[str], Callable]] = [
    ("van_lka.npz", "LKA", "LKA(64)", "van", _van("lka")),
    ("van_attention.npz", "Attention", "LKAAttention(64)", "van", _van("attention")),
    ("van_block.npz", "Block", "Block(64, mlp_ratio=8)", "van", _van("block")),
    ("van_b0.npz", "van_b0, 224²", "create_model('van_b0')", "van", _model("van_b0")),
    ("acmix_module_s1.npz", "ACmix", "ACmix, grouped conv path", "acmix", _acmix(False, **_S1)),
    ("acmix_module_s1.npz", "ACmix", "ACmix, depth-wise (Ascend) conv path", "acmix", _acmix(True, **_S1)),
    ("acmix_module_s2.npz", "ACmix, stride 2", "ACmix, grouped", "acmix", _acmix(False, **_S2)),
    ("acmix_module_s2.npz", "ACmix, stride 2", "ACmix, depth-wise", "acmix", _acmix(True, **_S2)),
    ("acmix_module_in32_out64_h8_katt5.npz", "ACmix 32→64, 8 heads, k_att 5", "ACmix, grouped", "acmix",
     _acmix(False, **_K5)),
    ("acmix_module_in32_out64_h8_katt5.npz", "ACmix 32→64, 8 heads, k_att 5", "ACmix, depth-wise", "acmix",
     _acmix(True, **_K5)),
    ("acmix_resnet_l1111.npz", "ACmix ResNet, layers 1-1-1-1, 224²", "acmix_resnet50(layers=(1, 1, 1, 1))", None,
     _model("acmix_resnet50", num_classes=10, layers=(1, 1, 1, 1))),
    ("acmix_swin_block_shift.npz", "SwinTransformerBlock (acmix, shift 3)", "SwinTransformerBlock", "acmix_swin",
     _swin("block")),
    ("acmix_swin_stage.npz", "BasicLayer (acmix, 2 blocks + merge)", "BasicLayer", "acmix_swin", _swin("stage")),
    ("acmix_swin_net_e32_d2222.npz", "SwinTransformer_acmix, embed 32, depths 2-2-2-2",
     "acmix_swin_tiny(embed_dim=32, depths=(2, 2, 2, 2))", None,
     _model("acmix_swin_tiny", embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))),
    ("san_sam_pairwise_k3.npz", "SAM pairwise k3", "SAM, fused CPU kernel", "san",
     _san("sam", 0, 64, 8, 32, 8, 3, attn_impl="auto")),
    ("san_sam_pairwise_k3.npz", "SAM pairwise k3", "SAM, gather (GPU/Ascend/ONNX)", "san",
     _san("sam", 0, 64, 8, 32, 8, 3, attn_impl="unfold")),
    ("san_sam_pairwise_k7.npz", "SAM pairwise k7", "SAM, fused", "san",
     _san("sam", 0, 64, 8, 32, 8, 7, attn_impl="auto")),
    ("san_sam_pairwise_k7.npz", "SAM pairwise k7", "SAM, gather", "san",
     _san("sam", 0, 64, 8, 32, 8, 7, attn_impl="unfold")),
    ("san_sam_patchwise_k3.npz", "SAM patchwise k3", "SAM, fused", "san",
     _san("sam", 1, 64, 8, 32, 8, 3, attn_impl="auto")),
    ("san_sam_patchwise_k3.npz", "SAM patchwise k3", "SAM, gather", "san",
     _san("sam", 1, 64, 8, 32, 8, 3, attn_impl="unfold")),
    ("san_sam_patchwise_k7.npz", "SAM patchwise k7", "SAM, fused", "san",
     _san("sam", 1, 64, 8, 32, 8, 7, attn_impl="auto")),
    ("san_sam_patchwise_k7.npz", "SAM patchwise k7", "SAM, gather", "san",
     _san("sam", 1, 64, 8, 32, 8, 7, attn_impl="unfold")),
    ("san_bottleneck_pairwise_k7.npz", "Bottleneck pairwise k7", "Bottleneck", "san",
     _san("bottleneck", 0, 64, 4, 16, 64, 8, 7)),
    ("san_bottleneck_patchwise_k7.npz", "Bottleneck patchwise k7", "Bottleneck", "san",
     _san("bottleneck", 1, 64, 4, 16, 64, 8, 7)),
]


def run_fixture(path: str, build: Callable, rules: Optional[str], mode: int) -> Tuple[float, float]:
    """(max abs diff, tolerance) of a freshly built module against fixture ``path`` in MindSpore ``mode``."""
    import mindspore as ms
    from . import load_official_state, read_official_state

    previous = ms.get_context("mode")
    ms.set_context(mode=mode)
    try:
        with np.load(path) as f:
            inp, ref = f["input"], f["output"]
        net = build()
        load_official_state(net, read_official_state(path), rules=rules)
        net.set_train(False)
        got = net(ms.Tensor(inp)).asnumpy()
    finally:
        ms.set_context(mode=previous)
    if got.shape != ref.shape:
        raise ValueError(f"{path}: output shape {got.shape} != official {ref.shape}")
    return float(np.abs(got - ref).max()), tolerance(ref)


def parity_rows(root: Optional[Path] = None, only: Optional[Iterable[str]] = None, log=print) -> List[dict]:
    """One row per (fixture, our variant): max abs diff in GRAPH and PYNATIVE mode, tolerance, pass."""
    import mindspore as ms

    root = Path(root or reference_root())
    wanted = set(only) if only else None
    rows = []
    for fixture, official, ours, rules, build in FIXTURES:
        if wanted is not None and fixture[:-4] not in wanted and fixture not in wanted:
            continue
        path = root / fixture
        if not path.is_file():
            raise FileNotFoundError(f"fixture {path} not found: the official-code fixtures ship in "
                                    "../shared/reference beside the repository (or set CONVATTN_REFERENCE_DIR)")
        graph, tol = run_fixture(str(path), build, rules, ms.GRAPH_MODE)
        pynative, _ = run_fixture(str(path), build, rules, ms.PYNATIVE_MODE)
        row = {"fixture": fixture[:-4], "official": official, "ours": ours, "graph": graph, "pynative": pynative,
               "tolerance": tol, "ok": max(graph, pynative) <= tol}
        log(f"{row['fixture']:40s} {ours:45s} graph {graph:.2g} pynative {pynative:.2g} tol {tol:.2g}"
            f"{'' if row['ok'] else '  FAIL'}")
        rows.append(row)
    return rows


def markdown_table(rows: List[dict], command: str = "python scripts/parity_table.py") -> str:
    import mindspore as ms

    lines = [f"Generated by `{command}` with MindSpore {ms.__version__} on CPU (float32, eval mode).", "",
             "| fixture (official module) | ours | max abs diff GRAPH / PYNATIVE | tolerance | within |",
             "|---|---|---:|---:|---|"]
    for r in rows:
        diff = f"{r['graph']:.1e}" if r["graph"] == r["pynative"] else f"{r['graph']:.1e} / {r['pynative']:.1e}"
        lines.append(f"| `{r['fixture']}` ({r['official']}) | {r['ours']} | {diff} | {r['tolerance']:.1e} | "
                     f"{'yes' if r['ok'] else '**no**'} |")
    return "\n".join(lines)
