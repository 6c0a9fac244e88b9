"""Command-line entry points behind scripts/train.py, scripts/eval.py and scripts/prepare_digits.py."""
from typing import Optional, Sequence

from ..utils.cli import ArgumentParser
from .config import ConfigError, parse_cli, validate
from ..utils.errors import command

__all__ = ["train_main", "check_main", "eval_main", "prepare_digits_main"]


@command
def train_main(argv: Optional[Sequence[str]] = None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    cfg = validate(parse_cli(argv, "Train a convattn model (YAML config + --key value overrides)."))
    from .trainer import train
    train(cfg)  # a failure (bad config, refused weights, divergence: exit 3) ends in utils.errors.command
    return 0


@command
def check_main(argv: Optional[Sequence[str]] = None) -> int:
    """Validate a training config + overrides without training (the launchers run it before starting processes)."""
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    cfg = validate(parse_cli(argv, "Check a training config (the launchers run this before any process)."))
    print(f"config OK: {cfg.model}, batch_size {cfg.batch_size} per device, accumulation_steps "
          f"{cfg.accumulation_steps}", flush=True)
    return 0


@command
def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    cfg = validate(parse_cli(argv, "Evaluate a checkpoint: top-1, top-5 and loss on the val tree."),
                   for_training=False)
    if cfg.ckpt is None and cfg.pretrained is None:
        raise ConfigError("eval needs weights: pass --ckpt PATH, or --pretrained (the official weights) / "
                          "--pretrained FILE.pth")
    if cfg.ckpt is not None and cfg.pretrained is not None:
        raise ConfigError("pass either --ckpt or --pretrained, not both")
    from .trainer import run_eval
    run_eval(cfg)
    return 0


def prepare_digits_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Write scikit-learn's bundled digits as an ImageFolder tree.")
    parser.add_argument("--out", default="./data/digits", help="output root (gets train/ and val/)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (upscaled from 8)")
    parser.add_argument("--val_fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    return parser


@command
def prepare_digits_main(argv: Optional[Sequence[str]] = None) -> int:
    args = prepare_digits_parser().parse_args(argv)
    from ..data import write_digits_imagefolder
    counts = write_digits_imagefolder(args.out, args.size, args.val_fraction, args.seed, args.overwrite)
    print(f"{args.out}: {counts['train']} train / {counts['val']} val images")
    return 0
