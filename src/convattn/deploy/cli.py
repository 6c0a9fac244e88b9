"""Command line of the exporter: ``python export/export.py`` (or ``python -m convattn.deploy``)."""
from ..layers.targets import resolve_target
from ..utils.cli import ArgumentParser, argument_type
from ..utils.errors import command

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Export a registered convattn model to MINDIR and/or ONNX. Every artifact is loaded back "
                    "(mindspore.load + nn.GraphCell, onnxruntime), run on a fixed random batch and compared with "
                    "the network in eval mode; it is kept, with a JSON sidecar, only within the tolerance.")
    p.add_argument("-c", "--config", metavar="RUN/config.yaml",
                   help="a training run's config.yaml: model, model_kwargs, class count, image size and preprocessing "
                        "come from it (flags given as well override it); --ckpt defaults to the run's best checkpoint")
    p.add_argument("--model", help="registered model name (convattn.list_models()); default: the run config's "
                                   "(-c, or the config.yaml beside --ckpt)")
    p.add_argument("--ckpt", help="MindSpore .ckpt to export (convert official weights with python -m convattn.convert)")
    p.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="FILE",
                   help="instead of --ckpt: the model's official weights (bare flag; downloaded, verified and "
                        "converted on first use, cached in $CONVATTN_HOME), or an official PyTorch .pth file")
    p.add_argument("--random_weights", action="store_true", help="export freshly initialised weights (smoke tests only)")
    p.add_argument("--format", default="ALL", help="MINDIR, ONNX or ALL (default ALL)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the exported input (default 1)")
    p.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: the model's)")
    p.add_argument("--dynamic_batch", action="store_true", help="leave the batch axis dynamic (verified at two sizes)")
    p.add_argument("--fp16", action="store_true", help="half-precision weights and input")
    p.add_argument("--out", default="exported", help="output folder (default ./exported)")
    p.add_argument("--name", help="file stem (default: the model name, plus _fp16)")
    p.add_argument("--model_kwargs", default=None, help="create_model arguments as a YAML flow mapping (JSON works too), e.g. "
                        "'{depths: [1, 1, 1, 1], num_classes: 10}'")
    p.add_argument("--num_classes", type=int, help="class count (default: read from the checkpoint's classifier)")
    p.add_argument("--overwrite", action="store_true", help="replace existing artifacts once the new ones verify")
    p.add_argument("--export_safe_mindir", action="store_true",
                   help="use the export-safe formulations in the MINDIR too (runtimes lacking e.g. Roll)")
    p.add_argument("--target", type=argument_type(resolve_target, "target"), default=None,
                   help="CPU, GPU or Ascend (any case): export the formulations that device runs (default: the "
                        "device MindSpore runs on here). Ascend: every ACmix conv path depth-wise (Ascend runs "
                        "grouped convolution only depth-wise). A checkpoint of any form loads; the artifact is "
                        "verified against the network in this device's form")
    p.add_argument("--ascend", action="store_true", help="the same as --target Ascend")
    p.add_argument("--seed", type=int, default=0, help="seed of the verification batch")
    return p


@command
def main(argv=None) -> int:
    from .. import apply_cpu_defaults

    apply_cpu_defaults()  # before MindSpore runs a kernel (see convattn._env)
    import convattn  # noqa: F401  (CPU defaults before MindSpore runs anything)

    from ..utils.cli import parse_model_kwargs
    from .export import export_model
    from .run import load_run_config, run_checkpoint, run_config_beside, run_model, run_preprocessing

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ascend:
        if args.target not in (None, "Ascend"):
            parser.error(f"--ascend means --target Ascend; it contradicts --target {args.target}: pass one of them")
        args.target = "Ascend"
    kwargs = parse_model_kwargs(args.model_kwargs) if args.model_kwargs is not None else None
    run = None
    if args.config is not None:
        run = load_run_config(args.config)
        args.model = run_model(run, args.model)
        if args.ckpt is None and args.pretrained is None and not args.random_weights:
            args.ckpt = run_checkpoint(run)
    elif args.ckpt is not None:
        run = run_config_beside(args.ckpt, args.model)  # the run that wrote the checkpoint, when it is beside it
    if args.model is None:
        if run is None:
            parser.error("--model NAME is required (or -c RUN/config.yaml, or a --ckpt with its run's config.yaml "
                         "beside it)")
        args.model = run["model"]
    if run is not None:
        print(f"[export] run config {run['_path']}: {run['model']}, model_kwargs {run.get('model_kwargs') or {}}, "
              f"{run.get('num_classes')} classes, image size {run.get('image_size')}")
        kwargs = dict(run.get("model_kwargs") or {}) if kwargs is None else kwargs
        if args.num_classes is None and "num_classes" not in kwargs:
            args.num_classes = run.get("num_classes")
    results = export_model(
        args.model, ckpt=args.ckpt, fmt=args.format, out_dir=args.out, batch=args.batch,
        image_size=args.image_size, dynamic_batch=args.dynamic_batch, fp16=args.fp16, model_kwargs=kwargs or {},
        num_classes=args.num_classes, random_weights=args.random_weights, overwrite=args.overwrite,
        name=args.name, export_safe_mindir=args.export_safe_mindir, target=args.target,
        seed=args.seed, pretrained=args.pretrained,
        preprocessing=run_preprocessing(run) if run is not None else None,
        run_config=run["_path"] if run is not None else None)
    for r in results:
        print(f"{r.format}: {r.path} ({r.size_bytes / 1e6:.2f} MB), max abs diff {r.max_abs_diff:.3g} "
              f"<= {r.tolerance:.3g}, {r.seconds:.1f} s; sidecar {r.sidecar}")
    return 0
