"""The model builder (timm's ``build_model_with_cfg``): what every family shares lives here, once.

- :func:`register_variants` turns a family's variant table (name -> architecture arguments) into registered
  factories: a family file holds its blocks, its network class, its ``default_cfgs`` and that table.
- :func:`check_out_indices` is the one ``features_only`` / ``out_indices`` validation; a network passes the number
  of feature stages it has.
- :func:`create_model` builds a registered name in exactly one form (:class:`convattn.layers.targets.BuildForm`:
  target, export-safe, CPU backend; plus the re-parameterised deploy form), with architecture overrides, the
  default config (``model.default_cfg``) and pretrained weights (:func:`convattn.models.helpers.load_checkpoint`).
  ``model.form`` records the form, and nothing changes it afterwards.
"""
import os
import sys
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import dataclasses

from ..layers.targets import build_target, decide_form
from .registry import accepted_kwargs, get_model_cfg, model_entrypoint, register_model

__all__ = ["register_variants", "check_out_indices", "create_model"]


def check_out_indices(out_indices: Optional[Sequence[int]], num_stages: int, unit: str = "stages") -> Tuple[int, ...]:
    """``out_indices`` as a tuple (None: every one of the ``num_stages`` feature stages); an index outside
    ``[0, num_stages)`` raises a ValueError naming it and the count (``unit``: what a stage is, e.g. 'blocks')."""
    out = tuple(range(num_stages) if out_indices is None else out_indices)
    bad = [i for i in out if not 0 <= i < num_stages]
    if bad:
        raise ValueError(f"out_indices {bad} out of range for {num_stages} {unit}")
    return out


def register_variants(module: str, model_cls: type, variants: Mapping[str, dict], default_cfgs: Mapping[str, dict],
                      build: Optional[Callable] = None) -> Dict[str, Callable]:
    """Register one factory per entry of ``variants`` (name -> architecture arguments) in ``module`` (pass
    ``__name__``): ``name(**kwargs)`` builds ``build(**{**variants[name], **kwargs})`` (``build`` defaults to
    ``model_cls``; give a function when a variant needs arguments the class does not take, e.g. ACmix's
    ``k_att``, which it turns into class arguments). Each name needs ``default_cfgs[name]``. The factories are
    also set as attributes of ``module`` (``convattn.models.van.van_b0``); ``create_model`` lists the accepted
    arguments from ``model_cls`` and ``build``. Returns ``{name: factory}``."""
    build = model_cls if build is None else build
    missing = sorted(set(variants) - set(default_cfgs))
    if missing:
        raise KeyError(f"{module} has variants without a default_cfgs entry: {missing}")
    factories = {}
    for name, args in variants.items():
        factory = _factory(name, dict(args), build, model_cls, module)
        register_model(factory, default_cfgs[name])
        setattr(sys.modules[module], name, factory)
        factories[name] = factory
    return factories


def _factory(name: str, args: dict, build: Callable, model_cls: type, module: str) -> Callable:
    def factory(**kwargs):
        merged = dict(args)
        merged.update(kwargs)
        return build(**merged)

    factory.__name__ = factory.__qualname__ = name
    factory.__module__ = module
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
    factory.__doc__ = f"{name}: {model_cls.__name__}({shown}); keyword arguments override these."
    factory.model_cls = model_cls  # lets create_model list the accepted architecture arguments
    factory.build = build
    factory.variant_args = args
    return factory


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained=None,
    in_chans: int = 3,
    drop_path_rate: Optional[float] = None,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    target: Optional[str] = None,
    export_safe: bool = False,
    cpu_backend: Optional[bool] = None,
    deploy=False,
    load_args: Optional[dict] = None,
    **arch_kwargs,
):
    """Build a registered model.

    Args:
        name: a registered name (see :func:`~convattn.models.registry.list_models`).
        num_classes: classifier size.
        pretrained: ``True``: the official weights (``default_cfg['weights']``), downloaded into the cache
            (``$CONVATTN_HOME``, default ``~/.cache/convattn``; ``CONVATTN_WEIGHTS_MIRROR``, ``CONVATTN_OFFLINE``),
            verified, converted once and loaded (see :mod:`convattn.hub`); a model whose weights were never released,
            or sit behind a manual link, is refused with the reason and what to do. A path: an official PyTorch
            checkpoint (``.pth``, ``.pth.tar``, ``.pt``, ``.npz``), converted on the fly, or a MindSpore ``.ckpt``
            (e.g. written by ``python -m convattn.convert``); or a name -> tensor dict. ``None``/``False``: random
            initialisation. A checkpoint whose classifier has another class count loads everything else and says
            so (exactly the ``default_cfg['classifier']`` tensors are left out).
        in_chans: input channels.
        drop_path_rate: stochastic-depth rate; ``None`` keeps the model's official default.
        features_only: return the stage feature maps (a tuple) instead of logits.
        out_indices: which stages ``features_only`` returns (default: all).
        target: ``'CPU'``, ``'GPU'`` or ``'Ascend'``: build the formulations that device runs (e.g. ACmix's
            depth-wise conv path on Ascend; see :mod:`convattn.layers.targets` and the README's target table).
            ``None``: the device MindSpore is set to. Any target builds and runs on any device (the forms are
            numerically identical), so the Ascend form can be tested on CPU; ``model.target`` records it.
            ``pretrained`` checkpoints of any form load into any other.
        export_safe: build every operator in a form ``mindspore.onnx.export`` can express (slice gathers, Erf-free
            GELU, edge-padded max pool); standard cells only.
        cpu_backend: the fused kernels of :mod:`convattn.cpu` (CPU target, not export-safe). None: where available
            (else one line says why and the standard cells are built); False: never; True: required.
        deploy: the re-parameterised inference form (BatchNorms folded, X-volution branches merged; eval mode,
            cannot train), made from the ``pretrained`` weights right after the build. A model with nothing to
            re-parameterise is refused; ``'auto'``: re-parameterise where the model has something to.
        load_args: extra arguments for :func:`~convattn.models.helpers.load_checkpoint` (e.g. ``{'classifier':
            None}`` to require the classifier, ``{'use_ema': True}``); its report is kept as ``model.load_report``.
        **arch_kwargs: architecture overrides, e.g. ``depths=(1, 1, 1, 1)``, ``embed_dims=...``.
    """
    entry = model_entrypoint(name)
    form = decide_form(target, export_safe, cpu_backend)  # an unknown target fails here, with the valid ones
    source = None
    if pretrained is True:  # before the build: refusals, offline and download errors come first
        from ..hub import official_checkpoint  # lazy and upward on purpose: see tests/test_layering.py

        pretrained, source = official_checkpoint(name)
    elif isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if form.target == "CPU":
        from .._env import apply_cpu_defaults

        apply_cpu_defaults(say=True)
    kwargs = dict(arch_kwargs)
    kwargs["num_classes"] = num_classes
    kwargs["in_chans"] = in_chans
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if features_only:
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices is only meaningful with features_only=True")
    try:
        with build_target(form):
            model = entry(**kwargs)
    except TypeError as exc:
        accepted = accepted_kwargs(entry)
        bad = sorted(k for k in kwargs if accepted is not None and k not in accepted)
        if bad:
            raise TypeError(
                f"{name} does not accept {bad}; accepted architecture arguments: {sorted(accepted)}"
            ) from exc
        raise
    cfg = get_model_cfg(name)
    cfg["num_classes"] = num_classes
    cfg["architecture"] = name
    model.default_cfg = cfg
    model.load_report = None
    if pretrained is not None and pretrained is not False:
        from .helpers import is_official_checkpoint, load_checkpoint

        args = {"classifier": cfg["classifier"], **(load_args or {})}
        if is_official_checkpoint(pretrained):
            from ..hub import load_official_file  # lazy and upward on purpose: see tests/test_layering.py

            model.load_report = load_official_file(model, pretrained, **args)
        else:
            model.load_report = load_checkpoint(model, pretrained, **args)
        if source is not None:
            model.load_report["source"] = source
    switched = []
    if deploy:
        from ..layers.reparam import switch_to_deploy

        with build_target(form):  # cells made by the re-parameterisation take the network's form
            switched = switch_to_deploy(model)
        if not switched and deploy != "auto":
            raise ValueError(f"{name} has no re-parameterisation (no switch_to_deploy()): build it without deploy=True")
    model.deploy_report = switched
    model.form = dataclasses.replace(form, deploy=bool(switched))
    model.target = form.target
    return model
