"""Convergence comparison of the attention cores: softmax (DeiT / Swin) vs the dynamic-convolution
readings of "Interpret Vision Transformers as ConvNets with Dynamic Convolutions" (ReLU/normalised ``_relu``,
depth-wise ``_dw``), trained through the engine (the code scripts/train.py runs) on the quickstart digits with
the same recipe, seed and number of epochs. Writes ``<out>/comparison.md`` (val top-1 and train loss per epoch),
``<out>/comparison.png`` (the curves, drawn with Pillow) and each run's engine output in ``<out>/<model>/``.

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
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


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
    from PIL import Image, ImageDraw
    W, H, pad = 900, 420, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 12), "attention cores on digits: train loss (left), val top-1 % (right) per epoch", fill="black")
    pw = (W - 3 * pad) // 2
    for p, key in enumerate(("train_loss", "val_top1")):
        x0, y0 = pad + p * (pw + pad), pad
        x1, y1 = x0 + pw, H - pad
        d.rectangle([x0, y0, x1, y1], outline="black")
        vals = [r[key] for res in results.values() for r in res["rows"]]
        vmin, vmax = min(vals), max(vals)
        vmax = vmax if vmax - vmin > 1e-9 else vmin + 1
        emax = max(max(r["epoch"] for r in res["rows"]) for res in results.values())
        d.text((x0 + 3, y0 + 3), f"{vmax:.3g}", fill="gray")
        d.text((x0 + 3, y1 - 14), f"{vmin:.3g}", fill="gray")
        d.text((x0, y1 + 8), "epoch 1", fill="black")
        d.text((x1 - 50, y1 + 8), f"epoch {emax}", fill="black")
        for j, (model, res) in enumerate(results.items()):
            colour = COLOURS[j % len(COLOURS)]
            pts = [(x0 + (r["epoch"] - 1) / max(emax - 1, 1) * pw, y1 - (r[key] - vmin) / (vmax - vmin) * (y1 - y0))
                   for r in res["rows"]]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for px, py in pts:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            d.text((x1 - 130, (y0 + 8 + 14 * j) if key == "val_top1" else (y1 - 20 - 14 * j)), model, fill=colour)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)
    return path


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


def main(argv=None) -> int:
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

