"""Convergence comparison of the attention cores: softmax (DeiT / Swin) vs the dynamic-convolution
readings of "Interpret Vision Transformers as ConvNets with Dynamic Convolutions" (ReLU/normalised ``_relu``,
depth-wise ``_dw``), trained through the engine (the code scripts/train.py runs) on the quickstart digits with
the same recipe, seed and number of epochs. Writes ``<out>/comparison.md`` (val top-1 and train loss per epoch),
``<out>/comparison.png`` (the curves) and each run's engine output in ``<out>/<model>/``.

    python scripts/compare_attention.py --out ./output/compare_attention            # DeiT trio, 6 epochs
    python scripts/compare_attention.py --family swin --epochs 4                     # the Swin trio
    python scripts/compare_attention.py --family both
    python scripts/compare_attention.py --family deit-rpe --epochs 5                 # with / without relative position

Models are shrunk to digits size with ``model_kwargs`` (below); everything else is one shared recipe. A name may
carry a variant suffix (``VARIANTS``): ``deit_tiny+rpe`` is DeiT with the relative position embedding (the
like-for-like softmax baseline), ``deit_tiny_relu-rpe`` the ReLU model without it (the first version).
"""
import argparse
import csv
import os
import sys
import time

from ..utils.cli import ArgumentParser
from ..utils.plot import Panel, line_panels
from ..utils.errors import command

__all__ = ["main", "build_parser", "recipe", "markdown", "plot", "SMALL", "FAMILIES", "VARIANTS"]

# small, structurally complete instances for 32x32 inputs (the whole block/attention code path of each model)
SMALL = {
    "deit": {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 4},           # 8x8 tokens, 3 heads
    "swin": {"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 24,     # 16x16 tokens, 4 stages
             "depths": [2, 2, 2, 1], "num_heads": [2, 2, 4, 4]},
}
FAMILIES = {"deit": ["deit_tiny", "deit_tiny_relu", "deit_tiny_dw"],
            "deit-rpe": ["deit_tiny", "deit_tiny+rpe", "deit_tiny_relu-rpe", "deit_tiny_relu"],
            "swin": ["swin_tiny", "swin_tiny_relu", "swin_tiny_dw"]}
# name suffix -> extra model kwargs
VARIANTS = {"+rpe": {"rel_pos_embed": True}, "-rpe": {"rel_pos_embed": False}}


def split_variant(name: str):
    """``'deit_tiny+rpe'`` -> ``('deit_tiny', {'rel_pos_embed': True})``; a plain name -> ``(name, {})``."""
    for suffix, kwargs in VARIANTS.items():
        if name.endswith(suffix):
            return name[:-len(suffix)], dict(kwargs)
    return name, {}


def recipe(name: str, args) -> dict:
    model, extra = split_variant(name)
    family = "swin" if model.startswith("swin") else "deit"
    return dict(
        dataset="digits", data_dir=args.data_dir, num_classes=10, image_size=32, crop_pct=1.0,
        interpolation="bilinear", scale=[0.6, 1.0], hflip=0.0, model=model, model_kwargs={**SMALL[family], **extra},
        drop_path_rate=0.0, batch_size=args.batch_size, opt="adamw", lr=args.lr, weight_decay=0.05,
        min_lr=args.lr / 100, warmup_epochs=1, warmup_lr=args.lr / 100, label_smoothing=0.1, epochs=args.epochs,
        val_interval=1, max_steps_per_epoch=args.max_steps, seed=args.seed, mode=0, num_parallel_workers=1,
        log_interval=1000, ckpt_dir=os.path.join(args.out, name), keep_checkpoint_max=1)


def read_log(path: str):
    with open(path, newline="") as f:
        return [{"epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]), "val_top1": float(r["val_top1"])}
                for r in csv.DictReader(f)]


def markdown(results: dict, args) -> str:
    models = list(results)
    head = ("| epoch | " + " | ".join(f"{m} loss | {m} top-1 %" for m in models) + " |\n"
            + "|---:|" + "---:|---:|" * len(models) + "\n")
    n = max(len(r["rows"]) for r in results.values())
    body = ""
    for i in range(n):
        cells = []
        for m in models:
            rows = results[m]["rows"]
            cells += [f"{rows[i]['train_loss']:.4f}", f"{rows[i]['val_top1']:.2f}"] if i < len(rows) else ["", ""]
        body += f"| {i + 1} | " + " | ".join(cells) + " |\n"
    summary = "| model | params | final top-1 % | best top-1 % | train time (s) |\n|---|---:|---:|---:|---:|\n"
    for m, r in results.items():
        summary += (f"| {m} | {r['params'] / 1e3:.1f} K | {r['rows'][-1]['val_top1']:.2f} | "
                    f"{max(x['val_top1'] for x in r['rows']):.2f} | {r['time_s']:.0f} |\n")
    setup = (f"Digits (scikit-learn, 32x32, the fixed 80/20 split of the quickstart tree), {args.epochs} epochs, batch {args.batch_size}, "
             f"AdamW lr {args.lr:g} (1 warm-up epoch, cosine), wd 0.05, label smoothing 0.1, seed {args.seed}, "
             f"CPU; model_kwargs {SMALL}.")
    return f"# Attention-core convergence on digits\n\n{setup}\n\n{summary}\n{head}{body}"


def plot(results: dict, path: str) -> str:
    """Train loss and val top-1 per epoch, one line per model (utils.plot); returns ``path``."""
    def series(key):
        return [(model, [r["epoch"] for r in res["rows"]], [r[key] for r in res["rows"]])
                for model, res in results.items()]

    return line_panels(path, [Panel(series("train_loss"), "train loss"), Panel(series("val_top1"), "val top-1 (%)")],
                       title="Attention cores on digits", size=(900, 420))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["deit", "deit-rpe", "swin", "both"], default="deit")
    parser.add_argument("--models", default=None, help="comma-separated model names (overrides --family)")
    parser.add_argument("--out", default="./output/compare_attention")
    parser.add_argument("--data_dir", default="./data/digits", help="digits tree (written on first use)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max_steps", type=int, default=0, help="cut each epoch after N steps (0 = full epoch)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        models = FAMILIES["deit"] + FAMILIES["swin"] if args.family == "both" else FAMILIES[args.family]
    unknown = [m for m in models if not (m.startswith("deit") or m.startswith("swin"))]
    if unknown:
        parser.error(f"only DeiT/Swin attention variants are compared, got {unknown}")

    from .config import ConfigError, validate
    from .trainer import train
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for model in models:
        try:
            cfg = validate(recipe(model, args))
        except ConfigError as exc:
            print(f"error: {model}: {exc}", file=sys.stderr)
            return 2
        t0 = time.time()
        train(cfg)
        rows = read_log(os.path.join(cfg.ckpt_dir, "train_log.csv"))
        from ..models import create_model
        base, extra = split_variant(model)
        params = sum(p.size for p in create_model(base, num_classes=10, **SMALL[
            "swin" if base.startswith("swin") else "deit"], **extra).trainable_params())
        results[model] = {"rows": rows, "time_s": time.time() - t0, "params": params}
    md = os.path.join(args.out, "comparison.md")
    with open(md, "w") as f:
        f.write(markdown(results, args))
    png = plot(results, os.path.join(args.out, "comparison.png"))
    print(open(md).read())
    print(f"wrote {md} and {png}")
    return 0

