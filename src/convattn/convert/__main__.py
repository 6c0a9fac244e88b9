"""``python -m convattn.convert --model NAME [--model_kwargs YAML] SRC DST``: official PyTorch weights -> MindSpore .ckpt."""
import sys

from ..utils.cli import ArgumentParser, parse_model_kwargs
from ..utils.errors import command


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Convert an official PyTorch checkpoint (.pth/.pth.tar, read without PyTorch; or .npz) "
                    "into a MindSpore .ckpt that convattn.create_model(NAME, pretrained=DST) loads.",
    )
    p.add_argument("--model", required=True, help="registered model name, e.g. van_b0 (see convattn.list_models())")
    p.add_argument("--model_kwargs", default="{}", help="create_model arguments as a YAML flow mapping (JSON works too), e.g. "
                        "'{depths: [1, 1, 1, 1], num_classes: 10}'")
    p.add_argument("--num_classes", type=int, default=None, help="class count (default: read from the checkpoint's head)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.add_argument("src", help="official checkpoint (.pth, .pth.tar, .pt or .npz)")
    p.add_argument("dst", help="MindSpore checkpoint to write (.ckpt)")
    return p


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    args = build_parser().parse_args(argv)
    try:
        kwargs = parse_model_kwargs(args.model_kwargs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .converter import convert_checkpoint, dumps

    try:
        info = convert_checkpoint(args.src, args.dst, args.model, kwargs, args.num_classes, args.overwrite)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 1
    print(dumps(info))
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
