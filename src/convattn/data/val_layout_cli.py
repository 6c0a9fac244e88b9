"""Command line of ``scripts/imagenet_val_layout.py`` / ``convattn-imagenet-val-layout``: ImageNet's flat
validation folder + its label file -> class folders of symbolic links (see --help)."""
import sys

from ..utils.cli import ArgumentParser
from .imagenet import ValLayoutError, make_val_layout
from ..utils.errors import command

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Turn ImageNet's flat val/ (ILSVRC2012_val_*.JPEG) into val/<class>/<file> symbolic links "
                    "(no copies) from a label file: Kaggle's LOC_val_solution.csv, '<file> <class>' lines, or one "
                    "label per line in sorted file order (the devkit's ground truth, with --classes meta.mat). "
                    "Everything is checked before anything is written.")
    p.add_argument("--val", required=True, help="the flat validation folder")
    p.add_argument("--labels", required=True, help="the label file")
    p.add_argument("--out", help="where the class folders go (default: inside --val; the flat files stay)")
    p.add_argument("--classes", help="integer labels: the devkit's data/meta.mat, or a file of class folder names "
                                     "in label order, one per line ('<wnid> <names>' lines keep the wnid)")
    p.add_argument("--index_base", type=int, choices=[0, 1], help="integer labels: 1 for the devkit, 0 for 0-based")
    p.add_argument("--dry_run", action="store_true", help="only say what would be created")
    return p


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        make_val_layout(args.val, args.labels, args.out, args.classes, args.index_base, args.dry_run)
    except ValLayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

