"""Command line of ``scripts/infer.py``: top-k predictions on image files from a checkpoint or a MINDIR."""
import sys

from ..layers.targets import resolve_target
from ..utils.cli import ArgumentParser, argument_type
from ..utils.errors import command

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Top-k classes with probabilities for image files, from a registered model with a checkpoint "
                    "or an exported MINDIR, through the model's own eval transform (resize, centre crop, mean/std).")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("-c", "--config", metavar="RUN/config.yaml",
                   help="a training run's config.yaml: model, model_kwargs, class count, preprocessing and class names "
                        "come from the run; --ckpt defaults to its best checkpoint")
    p.add_argument("--model", help="registered model name (default: the one named by the training run's config.yaml "
                                   "beside --ckpt, or by the MINDIR's sidecar)")
    p.add_argument("--ckpt", help="MindSpore .ckpt (a training run's or a converted one)")
    p.add_argument("--mindir", help="MINDIR written by scripts/run_export.sh (its .json sidecar beside it)")
    p.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="FILE",
                   help="with --model, instead of --ckpt: the model's official ImageNet weights (bare flag; downloaded, "
                        "verified and converted on first use, cached in $CONVATTN_HOME), or an official .pth file")
    p.add_argument("--model_kwargs", default=None,
                   help="architecture overrides as a YAML flow mapping, e.g. '{depths: [1, 1, 1, 1]}' (default: the training run's config.yaml beside the ckpt)")
    p.add_argument("--num_classes", type=int, help="class count (default: read from the checkpoint's classifier)")
    p.add_argument("--class_names", help="class-names file (class_names.json or one name per line); 'none' for "
                                         "indices (default: class_names.json beside the checkpoint, ImageNet-1k's "
                                         "names for 1,000 classes, else indices)")
    p.add_argument("--topk", type=int, default=5, help="classes reported per image (default 5)")
    p.add_argument("--batch_size", type=int, default=16, help="images per forward call (default 16)")
    p.add_argument("--device_target", default="CPU", type=argument_type(resolve_target, "device_target"),
                   help="CPU (default), GPU or Ascend (any case)")
    p.add_argument("--mode", type=int, default=0, choices=[0, 1], help="0 = GRAPH_MODE (default), 1 = PYNATIVE_MODE")
    p.add_argument("--out", help="write the predictions to this .csv or .json file")
    p.add_argument("--format", choices=["csv", "json"], help="output format (default: from --out's extension)")
    return p


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    import convattn  # noqa: F401  (CPU defaults before MindSpore runs anything)

    args = build_parser().parse_args(argv)
    import mindspore as ms

    previous_mode = ms.get_context("mode")
    try:
        return _run(args)
    finally:
        ms.set_context(mode=previous_mode)  # a caller in the same process (a notebook, the tests) keeps its mode


def _run(args) -> int:
    from ..utils.cli import parse_model_kwargs, split_num_classes
    from ..utils.errors import check_writable_file
    from .infer import InferError, Predictor, list_images, write_predictions
    from .run import load_run_config

    if args.out:  # before any work: a long run's predictions are not lost to an unwritable folder
        check_writable_file(args.out, "--out file")
    kwargs, num_classes = None, args.num_classes
    if args.model_kwargs is not None:
        kwargs, num_classes = split_num_classes(parse_model_kwargs(args.model_kwargs), args.num_classes)
    run = load_run_config(args.config) if args.config else None
    images = list_images(args.inputs)
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE if args.mode == 0 else ms.PYNATIVE_MODE)
    try:
        ms.set_device(args.device_target)
    except RuntimeError:  # the device is fixed once a kernel ran (a notebook, the tests): fine if it is this one
        if ms.get_context("device_target") != args.device_target:
            raise InferError(f"this process already runs on {ms.get_context('device_target')}; "
                             f"--device_target {args.device_target} needs a new process") from None
    pred = Predictor(model=args.model, ckpt=args.ckpt, mindir=args.mindir, model_kwargs=kwargs,
                     num_classes=num_classes, class_names=args.class_names, batch_size=args.batch_size,
                     pretrained=args.pretrained, run_config=run)
    print(f"[infer] {pred.model}: {len(images)} image(s), {pred.num_classes} classes (names: {pred.names_source}), "
          f"input {pred.image_hw[0]}x{pred.image_hw[1]}, batch {pred.batch_size}, {args.device_target}")
    results = pred.predict(images, args.topk)
    for r in results:
        if r["status"] == "ok":
            print(r["path"] + ": " + ", ".join(f"{n} ({p * 100:.1f}%)" for _, n, p in r["topk"]))
        else:
            print(f"{r['path']}: ERROR {r['error']}")
    if args.out:
        write_predictions(results, args.out, args.format)
        print(f"[infer] wrote {args.out}")
    bad = sum(r["status"] != "ok" for r in results)
    if bad:
        print(f"[infer] {bad} of {len(results)} image(s) could not be read (listed above); the others were predicted",
              file=sys.stderr)
    return 0 if bad < len(results) else 1
