"""Print the target table of docs/ascend.md (what each target runs, and why) and check checkpoints across formulations.

Usage: python scripts/target_table.py [--check [NAME ...]] [--readme docs/ascend.md]

``--check``: for each named model (default: one per family with a device-dependent formulation, at its test size)
build every distinct formulation (targets CPU, GPU, Ascend), save each one's random weights, load each checkpoint
into every other formulation and print the max relative output difference (the portability the tests assert).
"""
import os
import sys
import tempfile
import time

import numpy as np

from ..layers.targets import FORMULATIONS, TARGETS
from ..models import create_model, is_model, small_instance_kwargs
from ..utils.cli import ArgumentParser
from ..utils.readme import replace_marked_block
from ..utils.errors import command

__all__ = ["main", "build_parser", "target_table", "check", "FAMILIES"]

# one model per family with a device-dependent formulation: overrides of its small instance (SAN: 3x3 footprints
# so 64x64 inputs reach the last stage, see SAN_64) and the input side they need (None: the small instance's)
SAN_64 = ({"kernels": (3, 3, 3, 3, 3), "base_width": 32}, 64)
FAMILIES = {"acmix_resnet26": ({}, None), "acmix_swin_tiny": ({}, None), "acmix_pvt_tiny": ({}, None),
            "acmix_san10": ({}, None), "san10_pairwise": SAN_64, "san10_patchwise": SAN_64}


def target_table() -> str:
    """Markdown: one row per device-dependent formulation, one column per target (default form; why)."""
    lines = ["| formulation (layer argument) | " + " | ".join(TARGETS) + " |",
             "|---|" + "---|" * len(TARGETS)]
    for f in FORMULATIONS.values():
        cells = []
        for t in TARGETS:
            form = f.default[t]
            shown = f"`{form}`" + (f" (`{f.fallback}` without the compiled kernels)" if form == "fused" else "")
            others = [r for r in f.runs[t] if r != form]
            also = f"; also runs {', '.join(f'`{r}`' for r in others)}" if others else "; nothing else runs here"
            cells.append(f"{shown}{also}. {f.why[t][0].upper() + f.why[t][1:]}")
        lines.append(f"| {f.what} (`{f.argument}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check(names) -> str:
    import mindspore as ms
    from ..models.helpers import load_checkpoint

    ms.set_context(mode=ms.PYNATIVE_MODE)
    rows = ["| model | distinct formulations (targets) | checkpoint → network pairs | max relative output difference "
            "(worst pair) | tensors reshaped per load |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            overrides, side = FAMILIES.get(name, ({}, None))
            kwargs, (_, *size) = small_instance_kwargs(name, input_size=side, **overrides)
            size = tuple(size)
            x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3) + size).astype(np.float32))
            nets, seen = {}, {}
            for seed, t in enumerate(("Ascend", "CPU", "GPU")):
                ms.set_seed(seed)
                net = create_model(name, num_classes=10, target=t, **kwargs)
                form = tuple((n, getattr(c, "depthwise_conv", None), getattr(c, "attn_impl", None))
                             for n, c in net.cells_and_names() if hasattr(c, "depthwise_conv") or hasattr(c, "attn_impl"))
                if form in seen:
                    seen[form].append(t)
                    continue
                seen[form] = [t]
                net.set_train(False)
                nets[t] = net
            label = {ts[0]: "/".join(ts) for ts in seen.values()}
            outs = {t: n(x).asnumpy() for t, n in nets.items()}
            for t, net in nets.items():
                ms.save_checkpoint(net, os.path.join(tmp, f"{t}.ckpt"))
            worst, pairs, reshaped = (0.0, ""), 0, set()
            for src in nets:
                for dst in nets:
                    if src == dst:
                        continue
                    rep = load_checkpoint(nets[dst], os.path.join(tmp, f"{src}.ckpt"))
                    diff = float(np.abs(nets[dst](x).asnumpy() - outs[src]).max() / np.abs(outs[src]).max())
                    worst = max(worst, (diff, f"{label[src]} → {label[dst]}"))
                    pairs += 1
                    reshaped.add(len(rep["form_mapped"]))
            rows.append(f"| `{name}` | {len(nets)} ({', '.join(label.values())}) | {pairs} | {worst[0]:.1e} "
                        f"({worst[1]}) | {' or '.join(str(n) for n in sorted(reshaped))} |")
            print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", nargs="*", metavar="NAME", help="check cross-form checkpoints (default models: one "
                                                                "per family with a device-dependent formulation)")
    p.add_argument("--readme", help="also replace the blocks between <!-- target-table:begin/end --> (and, with "
                                    "--check, <!-- target-check:begin/end -->) in this file")
    return p


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    args = build_parser().parse_args(argv)
    table = target_table()
    print(table)
    if args.readme:
        replace_marked_block(args.readme, "target-table", table)
    if args.check is not None:
        names = args.check or list(FAMILIES)
        unknown = [n for n in names if not is_model(n)]
        if unknown:
            print(f"error: unknown models {unknown}; see convattn.list_models()", file=sys.stderr)
            return 2
        t0 = time.time()
        rows = check(names)
        print()
        print(rows)
        print(f"\n({time.time() - t0:.0f} s)")
        if args.readme:
            replace_marked_block(args.readme, "target-check", rows)
    return 0

