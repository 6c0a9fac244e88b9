"""Device targets and the formulations each one runs: the one table of device-dependent choices.

Some operators of the zoo have several numerically identical formulations, and which one a device can run (or
runs fastest) depends on the device. This module owns that choice; no layer reads MindSpore's device itself:

* a network is built *for* a target (``CPU``, ``GPU`` or ``Ascend``): :func:`convattn.create_model` enters
  :func:`build_target` around the model's constructor, and every layer asks :func:`select_form` for its
  formulation. Outside such a scope the target is the device MindSpore is set to;
* the target is only a choice of formulations, so a network built for Ascend also runs on a CPU-only MindSpore
  (that is how the Ascend form is tested);
* a formulation asked for explicitly (a layer argument) that the target cannot run is an error naming both.

Parameters of every formulation keep their names; where their shapes differ (the ACmix ``dep_conv`` weight),
:func:`map_between_forms` converts a checkpoint's tensor to the form being loaded (used by
:func:`convattn.models.helpers.load_checkpoint`, hence by ``create_model(pretrained=)``, evaluation, resuming and
export).
"""
import contextlib
import contextvars
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .fused_window import fused_kernels_available, unavailable_reason

__all__ = ["TARGETS", "Formulation", "FORMULATIONS", "resolve_target", "build_target", "select_form",
           "fused_allowed", "cell_kernels_allowed", "map_between_forms", "form_table"]

TARGETS = ("CPU", "GPU", "Ascend")

_BUILD_TARGET: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar("convattn_build_target", default=None)


@dataclass(frozen=True)
class Formulation:
    """One device-dependent choice: the layer argument selecting it, and per target the default and the forms
    it can run. ``fused`` forms also need the compiled kernels; without them the default falls back."""
    what: str
    argument: str
    default: Dict[str, str]
    runs: Dict[str, Tuple[str, ...]]
    why: Dict[str, str]
    fallback: str = ""  # the default where 'fused' is the target's default but the kernels are unavailable


_FUSED_WHY = "the fused local-window kernels are ops.Custom CPU (AOT) kernels compiled on the host, so "
FORMULATIONS: Dict[str, Formulation] = {
    "acmix_conv": Formulation(
        what="ACmix convolution path (dep_conv)", argument="depthwise_conv",
        default={"CPU": "grouped", "GPU": "grouped", "Ascend": "depthwise"},
        runs={"CPU": ("grouped", "depthwise"), "GPU": ("grouped", "depthwise"), "Ascend": ("depthwise",)},
        why={"CPU": "one grouped Conv2D (groups=head_dim): the official form, fewest operations",
             "GPU": "one grouped Conv2D (groups=head_dim): the official form, fewest operations",
             "Ascend": "Ascend runs a grouped Conv2D only when it is depth-wise (in = out = groups), so the conv path "
                       "broadcasts its inputs to a depth-wise Conv2D whose weight is the grouped one reshaped "
                       "(out, k*k, k, k) -> (out*k*k, 1, k, k)"}),
    "acmix_attention": Formulation(
        what="ACmix sliding-window attention", argument="attn_impl",
        default={"CPU": "fused", "GPU": "fast", "Ascend": "fast"},
        runs={"CPU": ("fused", "fast", "unfold"), "GPU": ("fast", "unfold"), "Ascend": ("fast", "unfold")},
        why={"CPU": "the fused CPU kernels build no k*k-expanded tensor: fastest and smallest on CPU",
             "GPU": _FUSED_WHY + "GPU runs the blocked dense-matmul attention (standard ops, no k*k-expanded "
                                 "tensors)",
             "Ascend": _FUSED_WHY + "Ascend runs the blocked dense-matmul attention (standard ops, no k*k-expanded "
                                    "tensors; matmuls suit its matrix units)"},
        fallback="fast"),
    "sam_aggregation": Formulation(
        what="SAN aggregation (SAM)", argument="attn_impl",
        default={"CPU": "fused", "GPU": "unfold", "Ascend": "unfold"},
        runs={"CPU": ("fused", "unfold"), "GPU": ("unfold",), "Ascend": ("unfold",)},
        why={"CPU": "the fused CPU kernels never build the k*k-expanded gather",
             "GPU": _FUSED_WHY + "GPU runs the gather + broadcast multiply + sum (standard ops)",
             "Ascend": _FUSED_WHY + "Ascend runs the gather + broadcast multiply + sum (standard ops)"},
        fallback="unfold"),
    "cell_kernels": Formulation(
        what="exact GELU, LayerNorm, BatchNorm, Dense layer, depth-wise and dense convolution, padded max pool, "
             "softmax attention",
        argument="(cell factories: GELU, layer_norm, ChannelLayerNorm, batch_norm2d, dense, depthwise_conv, conv2d, "
                 "max_pool2d; SoftmaxAttention)",
        default={"CPU": "fused", "GPU": "standard", "Ascend": "standard"},
        runs={"CPU": ("fused", "standard"), "GPU": ("standard",), "Ascend": ("standard",)},
        why={"CPU": "fused CPU kernels with their gradients: MindSpore's CPU Erf, LayerNorm(Grad), BatchNorm(Grad), "
                    "BiasAddGrad, MatMul and Conv2D (AVX2-capped), MaxPool3DWithArgmax, depth-wise "
                    "Conv2D(BackpropFilter) kernels and the attention's head transposes + BatchMatMul + Softmax are "
                    "slow; the same cells (types, parameters, values)",
             "GPU": _FUSED_WHY + "GPU runs MindSpore's own cells",
             "Ascend": _FUSED_WHY + "Ascend runs MindSpore's own cells"},
        fallback="standard"),
}


def resolve_target(target: Optional[str] = None) -> str:
    """``'CPU'``, ``'GPU'`` or ``'Ascend'`` (any case); ``None``: the target of the enclosing
    :func:`build_target`, else the device MindSpore is set to."""
    if target is None:
        target = _BUILD_TARGET.get()
        if target is None:
            import mindspore as ms
            try:
                target = ms.get_context("device_target")
            except (RuntimeError, ValueError):  # pragma: no cover - context not initialised
                target = "CPU"
    if isinstance(target, str):
        for t in TARGETS:
            if target.strip().lower() == t.lower():
                return t
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)} "
                     "(or None: the device MindSpore is set to)")


@contextlib.contextmanager
def build_target(target: Optional[str]) -> Iterator[str]:
    """Within the block, layers are built in the formulations of ``target`` (validated; None: the current one)."""
    token = _BUILD_TARGET.set(resolve_target(target))
    try:
        yield _BUILD_TARGET.get()
    finally:
        _BUILD_TARGET.reset(token)


def cell_kernels_allowed(target: Optional[str] = None) -> bool:
    """The cell factories (exact GELU, LayerNorm, Dense, depth-wise conv) build their fused-kernel form: the
    ``'cell_kernels'`` formulation of ``target`` is ``'fused'`` (the CPU, with the kernels compiled and enabled)."""
    return select_form("cell_kernels", target=target) == "fused"


def fused_allowed(target: Optional[str] = None) -> bool:
    """The fused CPU kernels may be built: the target is the CPU and the kernels are compiled and enabled."""
    return resolve_target(target) == "CPU" and fused_kernels_available()


def select_form(key: str, requested: Optional[str] = None, owner: str = "", target: Optional[str] = None) -> str:
    """The formulation ``key`` (see :data:`FORMULATIONS`) a layer uses on ``target`` (None: see
    :func:`resolve_target`). ``requested`` None or ``'auto'``: the target's default; an explicit form the
    target cannot run, or ``'fused'`` without the compiled kernels, is an error naming the form and the target."""
    f = FORMULATIONS[key]
    t = resolve_target(target)
    owner = owner or f.what
    if requested is None or requested == "auto":
        form = f.default[t]
        if form == "fused" and not fused_kernels_available():
            return f.fallback
        return form
    known = sorted({form for forms in f.runs.values() for form in forms})
    if requested not in known:
        raise ValueError(f"{owner}: unknown {f.argument} form {requested!r}; choose one of {known} or 'auto'")
    if requested not in f.runs[t]:
        raise ValueError(f"{owner}: {f.argument}={_arg_repr(f, requested)} (the {requested!r} {f.what}) cannot run on "
                         f"target {t!r}: {f.why[t]}. On {t} use "
                         f"{' or '.join(f'{f.argument}={_arg_repr(f, r)}' for r in f.runs[t])}, or leave it unset "
                         f"for the target's default, or build for another target")
    if requested == "fused" and not fused_kernels_available():
        reason = unavailable_reason()
        raise RuntimeError(f"{owner}: {f.argument}='fused' needs the fused CPU kernels, which are unavailable "
                           f"({reason}); use {f.argument}='auto' to fall back to '{f.fallback}'")
    return requested


def _arg_repr(f: Formulation, form: str) -> str:
    if f.argument == "depthwise_conv":
        return repr(form == "depthwise")
    return repr(form)


# ----------------------------------------------------------------------------- weights across formulations
def _dep_conv_reshape(arr: np.ndarray, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """ACmix ``dep_conv``: grouped ``(out, k*k, k, k)`` <-> depth-wise ``(out*k*k, 1, k, k)`` (a pure reshape:
    output o, slot i <-> depth-wise channel ``o*k*k + i``). None when the shapes are not the two forms."""
    src, shape = tuple(arr.shape), tuple(shape)
    if len(src) != 4 or len(shape) != 4 or src[2:] != shape[2:]:
        return None
    kk = shape[2] * shape[3]
    if src[1] == kk and shape[1] == 1 and src[0] * kk == shape[0]:  # grouped -> depth-wise
        return arr.reshape(shape)
    if src[1] == 1 and shape[1] == kk and shape[0] * kk == src[0]:  # depth-wise -> grouped
        return arr.reshape(shape)
    return None


# (name suffix, mapping): a parameter whose shape differs between formulations, and how to convert it.
# Training-state entries (optimizer moments ``moments.<name>``, EMA ``ema.<name>``) end with the same suffix.
WEIGHT_MAPS = ((".dep_conv.weight", _dep_conv_reshape),)


def map_between_forms(name: str, value: np.ndarray, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """``value`` (checkpoint entry ``name``) converted to ``shape``, the parameter's shape in the formulation
    being loaded; None when ``name`` is no form-dependent parameter or the shapes are not two of its forms."""
    for suffix, fn in WEIGHT_MAPS:
        if name == suffix[1:] or name.endswith(suffix):
            return fn(value, tuple(shape))
    return None


def form_table() -> List[dict]:
    """One row per formulation and target: what runs there and why (the README table)."""
    rows = []
    for key, f in FORMULATIONS.items():
        for t in TARGETS:
            default = f.default[t]
            rows.append({"formulation": f.what, "argument": f.argument, "target": t, "default": default,
                         "fallback": f.fallback if default == "fused" else "", "runs": list(f.runs[t]),
                         "why": f.why[t]})
    return rows
