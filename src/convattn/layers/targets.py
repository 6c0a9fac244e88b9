"""Device targets and the formulations each one runs: the one table of device-dependent choices.

Some operators of the zoo have several numerically identical formulations, and which one a device can run (or
runs fastest) depends on the device. This module owns that choice; no layer reads MindSpore's device itself:

* a network is built in exactly one :class:`BuildForm`: :func:`convattn.create_model` enters :func:`build_target`
  around the model's constructor with the target (``CPU``, ``GPU`` or ``Ascend``), whether the network must be
  ONNX-expressible (``export_safe``) and whether it may use the optional CPU backend (:mod:`convattn.cpu`, fused
  kernels; only for the CPU target, never export-safe). Every layer asks :func:`current_form`,
  :func:`select_form` or :func:`cpu_cell` while it is built and keeps what it got: nothing switches a built
  network's formulation afterwards. Outside such a scope the form is the default one of the device MindSpore is
  set to;
* the target is only a choice of formulations, so a network built for Ascend also runs on a CPU-only MindSpore
  (that is how the Ascend form is tested);
* a formulation asked for explicitly (a layer argument) that the target cannot run is an error naming both.

Parameters of every formulation keep their names; where their shapes differ (the ACmix ``dep_conv`` weight),
:func:`map_between_forms` converts a checkpoint's tensor to the form being loaded (used by
:func:`convattn.models.helpers.load_checkpoint`, hence by ``create_model(pretrained=)``, evaluation, resuming and
export).

The CPU backend is consulted only here (:func:`cpu_cell`): with ``CONVATTN_FUSED_KERNELS=0`` (or
``cpu_backend=False``) it is never imported. When it cannot serve (no compiler, a failed build or load) the
network is built from the standard cells and one line says why.
"""
import contextlib
import contextvars
import os
import warnings
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

__all__ = ["TARGETS", "Formulation", "FORMULATIONS", "BuildForm", "resolve_target", "build_target", "current_form",
           "select_form", "cpu_cell", "cpu_backend_enabled", "set_cpu_backend_threads", "decide_form", "map_between_forms",
           "form_table"]

TARGETS = ("CPU", "GPU", "Ascend")


@dataclass(frozen=True)
class Formulation:
    """One device-dependent choice: the layer argument selecting it, and per target the default and the forms
    it can run. ``fused`` forms also need the CPU backend; without it the default falls back."""
    what: str
    argument: str
    default: Dict[str, str]
    runs: Dict[str, Tuple[str, ...]]
    why: Dict[str, str]
    fallback: str = ""  # the default where 'fused' is the target's default but the network has no CPU backend


_FUSED_WHY = "the CPU backend's fused kernels are ops.Custom CPU (AOT) kernels compiled on the host, so "
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


BACKEND_VAR = "CONVATTN_FUSED_KERNELS"


@dataclass(frozen=True)
class BuildForm:
    """The form a network is built in, decided once before its first layer: the ``target`` whose formulations
    it runs, ``export_safe`` (every operator expressible in ONNX: slice gathers, Erf-free GELU, edge-padded max
    pool) and ``cpu_backend`` (the fused kernels of :mod:`convattn.cpu`; CPU target only, never export-safe).
    ``note``: why the CPU backend is off where the CPU target would use it (empty otherwise); ``deploy``: the
    network was re-parameterised for inference right after its build (``create_model(deploy=True)``)."""
    target: str
    export_safe: bool = False
    cpu_backend: bool = False
    note: str = ""
    deploy: bool = False

    def describe(self) -> str:
        parts = [self.target, "export-safe" if self.export_safe else "",
                 "CPU backend" if self.cpu_backend else "standard cells", "deploy" if self.deploy else ""]
        return ", ".join(p for p in parts if p)


_BUILD_FORM: "contextvars.ContextVar[Optional[BuildForm]]" = contextvars.ContextVar("convattn_build_form",
                                                                                    default=None)
_WARNED = set()


def cpu_backend_enabled() -> bool:
    """False when ``CONVATTN_FUSED_KERNELS`` (``0``, ``false``, ``off``, ``no``) turns the CPU backend off: the one
    switch; off, :mod:`convattn.cpu` is never imported."""
    return os.environ.get(BACKEND_VAR, "1").strip().lower() not in ("0", "false", "off", "no")


def _device_target() -> str:
    import mindspore as ms
    try:
        return ms.get_context("device_target")
    except (RuntimeError, ValueError):  # pragma: no cover - context not initialised
        return "CPU"


def resolve_target(target: Optional[str] = None) -> str:
    """``'CPU'``, ``'GPU'`` or ``'Ascend'`` (any case); ``None``: the target of the enclosing
    :func:`build_target`, else the device MindSpore is set to."""
    if target is None:
        form = _BUILD_FORM.get()
        target = form.target if form is not None else _device_target()
    if isinstance(target, str):
        for t in TARGETS:
            if target.strip().lower() == t.lower():
                return t
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)} "
                     "(or None: the device MindSpore is set to)")


def decide_form(target: Optional[str] = None, export_safe: bool = False,
                cpu_backend: Optional[bool] = None) -> BuildForm:
    """The :class:`BuildForm` for these choices. ``cpu_backend`` None: use the CPU backend where the target is the
    CPU, the network is not export-safe, the switch is on and the kernels are ready (else one warning line says
    why, and the standard cells are built); True: the same, but an unavailable backend is an error; False: never."""
    t = resolve_target(target)
    export_safe = bool(export_safe)
    if cpu_backend is False or t != "CPU" or export_safe:
        if cpu_backend is True:
            why = "export-safe networks use standard cells" if export_safe else f"the target is {t}"
            raise ValueError(f"cpu_backend=True needs target='CPU' and export_safe=False ({why})")
        return BuildForm(t, export_safe, False)
    if not cpu_backend_enabled():
        reason = f"{BACKEND_VAR}=0"
    else:
        from ..cpu.runtime import runtime  # the backend is imported only here, only when it may be used

        rt = runtime()
        if rt.available:
            return BuildForm(t, False, True)
        reason = rt.reason or "unavailable"
    if cpu_backend is True:
        raise RuntimeError(f"cpu_backend=True: the CPU backend is unavailable ({reason}); leave cpu_backend unset "
                           "to build the standard cells")
    if cpu_backend_enabled() and reason not in _WARNED:
        _WARNED.add(reason)
        warnings.warn(f"convattn: CPU backend unavailable ({reason}); building standard MindSpore cells (slower)",
                      RuntimeWarning, stacklevel=3)
    return BuildForm(t, False, False, note=reason)


def current_form() -> BuildForm:
    """The form of the network being built (the enclosing :func:`build_target`), else the default form of the
    device MindSpore is set to (a layer built on its own)."""
    form = _BUILD_FORM.get()
    return form if form is not None else decide_form(None)


@contextlib.contextmanager
def build_target(target: Optional[str] = None, export_safe: bool = False,
                 cpu_backend: Optional[bool] = None) -> Iterator[BuildForm]:
    """Within the block, layers are built in one form (:func:`decide_form`; a :class:`BuildForm` is taken as
    it is); yields it."""
    form = target if isinstance(target, BuildForm) else decide_form(target, export_safe, cpu_backend)
    token = _BUILD_FORM.set(form)
    try:
        yield form
    finally:
        _BUILD_FORM.reset(token)


def set_cpu_backend_threads(n: Optional[int]) -> None:
    """Give the CPU backend's kernels ``n`` threads (MindSpore 2.10 has no getter for the count its
    ``threads_num`` sets, so the tools pass theirs); nothing where the backend is switched off."""
    if cpu_backend_enabled():
        from ..cpu.runtime import set_threads

        set_threads(n)


def cpu_cell(kind: str, *args, **kwargs):
    """The CPU backend's fused cell ``kind`` (see :data:`convattn.cpu.FUSED_CELLS`) with these arguments when the
    network being built uses the backend and the backend serves these arguments; else None (the caller builds
    its standard cell)."""
    if not current_form().cpu_backend:
        return None
    from .. import cpu

    return cpu.build(kind, *args, **kwargs)


def select_form(key: str, requested: Optional[str] = None, owner: str = "", target: Optional[str] = None) -> str:
    """The formulation ``key`` (see :data:`FORMULATIONS`) a layer uses in the form being built (``target``
    given: that target's default form). ``requested`` None or ``'auto'``: the form's default; an explicit form the
    target cannot run, or ``'fused'`` without the CPU backend, is an error naming the form and the target."""
    f = FORMULATIONS[key]
    form = current_form() if target is None else decide_form(target)
    t = form.target
    owner = owner or f.what
    if requested is None or requested == "auto":
        default = f.default[t]
        if default == "fused" and not form.cpu_backend:
            return f.fallback
        return default
    known = sorted({form for forms in f.runs.values() for form in forms})
    if requested not in known:
        raise ValueError(f"{owner}: unknown {f.argument} form {requested!r}; choose one of {known} or 'auto'")
    if requested not in f.runs[t]:
        raise ValueError(f"{owner}: {f.argument}={_arg_repr(f, requested)} (the {requested!r} {f.what}) cannot run on "
                         f"target {t!r}: {f.why[t]}. On {t} use "
                         f"{' or '.join(f'{f.argument}={_arg_repr(f, r)}' for r in f.runs[t])}, or leave it unset "
                         f"for the target's default, or build for another target")
    if requested == "fused" and not form.cpu_backend:
        why = "the network is built export-safe" if form.export_safe else (form.note or "it is switched off")
        raise RuntimeError(f"{owner}: {f.argument}='fused' needs the CPU backend's fused kernels, which this "
                           f"network does not use ({why}); use {f.argument}='auto' to fall back to '{f.fallback}'")
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
