"""Ascend, proven from CPU: the Ascend form of a model, its O2 training step, and an operator audit of both graphs.

:func:`build_ascend_form` builds a registered model as it runs on Ascend (on any backend, CPU included).
:func:`ascend_train_step` is the trainer's own training step (:func:`convattn.engine.step.build_train_step`) with
the AMP settings of the Ascend recipes (:data:`ASCEND_AMP`: O2 in float16, BatchNorm kept in float32, dynamic loss
scale from 1024) and the trainer's soft-target cross-entropy: forward, backward, unscaling, the overflow check and
the optimizer update, in one graph.

:func:`audit_model` compiles the inference graph (float32, eval) and that O2 training step of a model's Ascend
form in GRAPH mode, reads the front-end graph (the one every backend receives, serialised to MINDIR
as :func:`mindspore.export` does), counts every primitive, and checks each one:

* **platforms**: the ``Supported Platforms`` section of the primitive's docstring in the installed MindSpore
  (following "Refer to :func:`mindspore.ops.x`" to the function's docstring). A backward primitive MindSpore
  derives itself (``Conv2DBackpropInput``, ``SoftmaxBackward``, ...) takes the status of its forward primitive;
  graph-plumbing primitives (``Load``, ``MakeTuple``, ...) run no kernel. Not ``Ascend`` = violation;
  no documented answer = ``unknown``, flagged by name in every table (the command line fails on it with
  ``--strict``).
* **grouped convolution**: Ascend runs a grouped ``Conv2D`` (and its backward) only when depth-wise
  (``in = out = group``, weight ``(group, 1, k, k)``).
* **dtypes**: every float input must be float16 or float32 (what O2 produces and Ascend 910 kernels take); a few
  primitives document narrower input dtypes (:data:`DTYPE_RULES`).
* **CPU kernels**: ``Custom`` AOT kernels (the fused CPU kernels) are compiled for the CPU only.

``bench.ascend_audit_cli`` (``convattn-ascend-audit``, ``scripts/ascend_audit.py``) is the command line; it prints one table per model, a summary, and exits 1 on a
violation. Layers and models never import this module.
"""
import collections
import inspect
import os
import re
import tempfile
from typing import Dict, List, Optional

import numpy as np
import mindspore as ms
from mindspore import nn, ops

__all__ = ["REPRESENTATIVES", "REVIEWED_UNDOCUMENTED", "DTYPE_RULES", "ASCEND_AMP", "build_ascend_form",
           "ascend_train_step", "graph_primitives",
           "primitive_platforms", "audit_graph", "audit_net", "audit_model", "network_signature", "findings",
           "summary_table", "model_table", "primitive_table",
           "save_results", "load_results", "CI_OVERRIDES", "SMALL_CONFIGS", "DIGITS", "digits_arrays",
           "o2_digits_training", "audit_and_train_small", "digits_table"]

# One model per code path of the Ascend forms (CI audits these and trains them on digits under O2); together they
# run every layer formulation of the zoo (the other models are these with other widths and depths).
REPRESENTATIVES = {
    "ResNet bottleneck + ACmix (depth-wise conv path, blocked window attention)": "acmix_resnet26",
    "Swin (shifted-window softmax attention, patch merging) + ACmix in windows": "acmix_swin_tiny",
    "PVT (spatial-reduction attention) + ACmix in PVT": "acmix_pvt_tiny",
    "SAN network, patchwise gather + ACmix conv path": "acmix_san10",
    "SAN pairwise gather with position encoding": "san10_pairwise",
    "depth-wise dynamic attention in windows": "swin_tiny_dw",
    "ReLU attention, global (DeiT, class token)": "deit_tiny_relu",
    "VAN large-kernel attention": "van_b0",
    "X-volution PSSA (BasicBlock ResNet)": "xvolution_resnet34",
}
# The AMP settings of every Ascend recipe (configs/*/*_ascend.yaml: amp_level, amp_dtype, loss_scale), as the trainer
# applies them (tests/test_one_of_each.py checks the recipes against it)
ASCEND_AMP = dict(amp_level="O2", amp_dtype="float16", loss_scale=1024.0)
# Primitives in our graphs whose docstrings state no platforms, reviewed by hand (still reported as 'unknown').
REVIEWED_UNDOCUMENTED = {
    "Muls": "tensor x Python scalar, emitted by the front end for `x * 0.5`; no docstring",
    "Divs": "tensor / Python scalar, emitted by the front end for `x / 2.0`; no docstring",
    "MatMulExt": "the matmul of mindspore.mint / ops.matmul on 2.10; no docstring",
    "UniformReal": "ops.rand (drop path); the primitive is documented as Deprecated from 2.10",
    # the trainer's dynamic loss scale (mindspore.amp.DynamicLossScaler and amp.all_finite, both documented for
    # Ascend GPU CPU; on Ascend 910A all_finite reads the NPU float status instead of counting IsFinite)
    "EqScalar": "DynamicLossScaler.adjust: the int32 step counter == scale_window - 1; no docstring",
    "RemainderTensorScalar": "DynamicLossScaler.adjust: (counter + 1) % scale_window on the int32 counter; "
                             "no docstring",
    "LessScalar": "amp.all_finite: the int64 count of non-finite gradients < 1; no docstring",
    "TensorMove": "a copy of the float32 loss-scale value, read by the unscaling before adjust() assigns it; "
                  "no docstring",
}

# Primitives that only wire the graph (parameters, tuples, side-effect order): no device kernel.
GRAPH_PLUMBING = {"Load", "UpdateState", "Depend", "MakeTuple", "TupleGetItem", "MakeList", "ListGetItem",
                  "Return", "Constant", "make_tuple", "tuple_getitem", "Partial", "Switch"}
# Backward primitives that MindSpore's autodiff emits for a forward primitive (the forward's docs cover them).
BACKWARD_OF = {
    "Conv2DBackpropInput": "Conv2D", "Conv2DBackpropFilter": "Conv2D", "BatchNormGrad": "BatchNorm",
    "ReluGrad": "ReLU", "SoftmaxBackward": "Softmax", "LogSoftmaxGrad": "LogSoftmax",
    "StridedSliceGrad": "StridedSlice", "MirrorPadGrad": "MirrorPad", "BiasAddGrad": "BiasAdd",
    "MaxPool3DGradWithArgmax": "MaxPool3DWithArgmax", "LayerNormGrad": "LayerNorm", "GeLUGrad": "GeLU",
    "SigmoidGrad": "Sigmoid", "SqrtGrad": "Sqrt", "RsqrtGrad": "Rsqrt", "MaxPoolGrad": "MaxPool",
    "AvgPoolGrad": "AvgPool", "TanhGrad": "Tanh", "SiLUGrad": "SiLU", "Im2ColGrad": "Im2Col",
    "GatherDGradV2": "GatherD", "SplitWithSize": "Split", "LayerNormGradGrad": "LayerNorm",
}
# Documented input dtypes narrower than {float16, float32}: primitive -> (input index, allowed dtypes, source).
DTYPE_RULES = {
    "LinSpace": ((0, 1), ("float32", "float64"), "mindspore.ops.LinSpace: start/stop float32 or float64"),
}
FLOAT_OK = ("float16", "float32")
_CONV_FAMILY = {"Conv2D": 1, "Conv2DBackpropInput": 1, "Conv2DBackpropFilter": None}  # weight input (None: output)


# ----------------------------------------------------------------------------------------------- building
def build_ascend_form(name: str, **kwargs) -> nn.Cell:
    """Registered model ``name`` in the form it runs on Ascend, built on any backend (CPU included)."""
    from ..models import create_model
    return create_model(name, target="Ascend", **kwargs)


def ascend_train_step(net: nn.Cell, optimizer: Optional[nn.Optimizer] = None, lr: Optional[float] = None):
    """The trainer's training step as the Ascend recipes run it, over ``net``:
    :func:`convattn.engine.step.build_train_step` with :data:`ASCEND_AMP` and the trainer's soft-target
    cross-entropy; ``optimizer`` defaults to AdamW at ``lr`` (default ``DIGITS['lr']``) without weight decay, the
    optimizer of the digits training. ``net`` is put under O2 in place (``step.network`` is the wrapped one).
    ``step(images, soft_targets) -> (loss, finite)``; its compiled graph is ``step.graphs['step']``."""
    from ..engine.losses import SoftTargetCrossEntropy
    from ..engine.step import build_train_step
    if optimizer is None:
        optimizer = nn.AdamWeightDecay(net.trainable_params(), learning_rate=DIGITS["lr"] if lr is None else lr,
                                       weight_decay=0.0)
    return build_train_step(net, SoftTargetCrossEntropy(), optimizer, **ASCEND_AMP)


# ------------------------------------------------------------------------------------------ graph reading
_DTYPES = None


def _dtype_names() -> Dict[int, str]:
    global _DTYPES
    if _DTYPES is None:
        from mindspore.train import mind_ir_pb2
        alias = {"float": "float32", "double": "float64"}
        _DTYPES = {v: alias.get(k.lower(), k.lower()) for k, v in mind_ir_pb2.TensorProto.DataType.items()}
    return _DTYPES


def _out_types(node_or_attr) -> List[tuple]:
    """[(dtype name, shape)] of a node's outputs, from its 'shape' attribute."""
    names = _dtype_names()
    for attr in node_or_attr.attribute:
        if attr.name == "shape":
            return [(names.get(t.data_type, str(t.data_type)), tuple(t.dims)) for t in attr.tensors]
    return []


def _attr_value(attr):
    if attr.type == attr.INT64 or attr.HasField("i"):
        return attr.i
    if attr.HasField("s"):
        return attr.s.decode() if isinstance(attr.s, bytes) else attr.s
    return None


def _graph_proto(cell: nn.Cell, *inputs):
    """The MINDIR ``ModelProto`` of ``cell`` compiled (GRAPH mode) on ``inputs``: the front-end graph that every
    backend receives, as :func:`mindspore.export` writes it. Compiles through :meth:`Cell.compile`, so a later call
    of ``cell`` on inputs of the same shapes runs this graph without compiling again."""
    from mindspore.train import mind_ir_pb2
    model = mind_ir_pb2.ModelProto()
    try:
        from mindspore.graph.api import _cell_graph_executor
        cell.compile(*inputs)
        model.ParseFromString(_cell_graph_executor._get_func_graph_proto(cell, cell.compile_phase, "mind_ir"))
        return model
    except (ImportError, AttributeError):  # another MindSpore layout: the public route (compiles once more)
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph")
        ms.export(cell, *inputs, file_name=path, file_format="MINDIR")
        with open(path + ".mindir", "rb") as f:
            model.ParseFromString(f.read())
    return model


def graph_primitives(cell: nn.Cell, *inputs) -> List[dict]:
    """Compile ``cell`` on ``inputs`` in GRAPH mode and return one record per primitive node: ``{'op', 'attrs',
    'in' [(dtype, shape)], 'out' [(dtype, shape)], 'where'}`` (every sub-graph included)."""
    model = _graph_proto(cell, *inputs)
    names = _dtype_names()
    prims = {p.name: p for p in model.primitives}
    graphs = [model.graph] + list(model.functions)
    values = {}  # value name -> [(dtype, shape)]
    for g in graphs:
        for v in list(g.input) + list(g.output):
            values[v.name] = [(names.get(t.data_type, str(t.data_type)), tuple(t.dims)) for t in v.tensor]
        for p in g.parameter:
            values[p.name] = [(names.get(p.data_type, str(p.data_type)), tuple(p.dims))]
        for n in g.node:
            values[n.output[0] if n.output else n.name] = _out_types(n)
    records = []
    for g in graphs:
        for n in g.node:
            ref = n.op_type[5:] if n.op_type.startswith("REF::") else n.op_type
            prim = prims.get(ref)
            if prim is None:  # Constant, or a call of a sub-graph
                continue
            attrs = {a.name: _attr_value(a) for a in prim.attribute}
            ins = [values.get(i, [(None, ())])[0] if values.get(i) else (None, ()) for i in n.input]
            records.append({"op": prim.op_type, "attrs": attrs, "in": ins, "out": _out_types(n), "where": n.domain})
    return records


# ------------------------------------------------------------------------------------------- documentation
_PLATFORMS_CACHE: Dict[str, tuple] = {}
_PLATFORMS_RE = re.compile(r"Supported Platforms:\s*\n\s*([^\n]+)")
_REFER_RE = re.compile(r"Refer to :func:`mindspore\.ops\.([\w.]+)`")


def _documented(doc: Optional[str]):
    m = _PLATFORMS_RE.search(doc or "")
    if m:
        return tuple(re.findall(r"``(\w+)``", m.group(1))) or tuple(m.group(1).split())
    return None


def _primitive_class(op: str):
    from mindspore.ops import operations as P
    from mindspore.ops import auto_generate as A
    from mindspore.ops.operations import _grad_ops, _inner_ops
    for mod in (P, A, _grad_ops, _inner_ops):
        cls = getattr(mod, op, None)
        if inspect.isclass(cls):
            yield cls


def primitive_platforms(op: str) -> tuple:
    """``(platforms, source)`` for primitive ``op`` from the installed MindSpore's docstrings; ``platforms`` is a
    tuple such as ``('Ascend', 'GPU', 'CPU')``, ``('graph',)`` for plumbing, or None when nothing documents it."""
    if op in _PLATFORMS_CACHE:
        return _PLATFORMS_CACHE[op]
    result = (None, "no 'Supported Platforms' in its docstring or the function it refers to")
    if op in GRAPH_PLUMBING:
        result = (("graph",), "graph plumbing, no kernel")
    elif op in BACKWARD_OF:
        fwd, src = primitive_platforms(BACKWARD_OF[op])
        result = (fwd, f"backward of {BACKWARD_OF[op]} ({src})")
    else:
        for cls in _primitive_class(op):
            found = _documented(cls.__doc__)
            if found:
                result = (found, f"{cls.__module__.split('.')[-1]}.{op} docstring")
                break
            ref = _REFER_RE.search(cls.__doc__ or "")
            if ref:
                from mindspore.ops import auto_generate
                fn = getattr(ops, ref.group(1), None) or getattr(auto_generate, ref.group(1), None)
                found = _documented(getattr(fn, "__doc__", None))
                if found:
                    result = (found, f"mindspore.ops.{ref.group(1)} docstring")
                    break
    _PLATFORMS_CACHE[op] = result
    return result


# ------------------------------------------------------------------------------------------------- checks
def _check(rec: dict) -> List[str]:
    """Constraint violations of one primitive node."""
    op, problems = rec["op"], []
    if op in _CONV_FAMILY:
        group = int(rec["attrs"].get("group", rec["attrs"].get("groups", 1)) or 1)
        idx = _CONV_FAMILY[op]
        wshape = (rec["out"][0][1] if rec["out"] else ()) if idx is None else \
            (rec["in"][idx][1] if len(rec["in"]) > idx else ())
        if group > 1 and not (len(wshape) == 4 and wshape[1] == 1 and wshape[0] == group):
            problems.append(f"grouped {op} (group {group}, weight {wshape}) is not depth-wise")
    if op == "Custom" and str(rec["attrs"].get("func_type", "")) in ("aot", "pyfunc"):
        problems.append(f"Custom {rec['attrs'].get('func_type')} kernel (CPU-only)")
    if op not in GRAPH_PLUMBING and op != "Cast":
        rule = DTYPE_RULES.get(op)
        for i, (dtype, _) in enumerate(rec["in"]):
            if dtype is None or not dtype.startswith(("float", "bfloat")):
                continue
            if rule and i in rule[0]:
                if dtype not in rule[1]:
                    problems.append(f"{op} input {i} is {dtype} ({rule[2]})")
            elif dtype not in FLOAT_OK:
                problems.append(f"{op} input {i} is {dtype} (Ascend kernels take float16/float32)")
    return problems


def audit_graph(records: List[dict]) -> Dict[str, dict]:
    """Per primitive: count, input float dtypes seen, documented platforms (+ source) and its status
    ('ok', 'graph', 'violation', 'unknown') with the problems found."""
    table = collections.OrderedDict()
    for rec in sorted(records, key=lambda r: r["op"]):
        row = table.setdefault(rec["op"], {"count": 0, "dtypes": set(), "problems": [], "groups": set()})
        row["count"] += 1
        if rec["op"] in _CONV_FAMILY:
            row["groups"].add(int(rec["attrs"].get("group", 1) or 1))
        row["dtypes"].update(d for d, _ in rec["in"] if d and d.startswith(("float", "bfloat")))
        for p in _check(rec):
            if p not in row["problems"]:
                row["problems"].append(p)
    for op, row in table.items():
        platforms, source = primitive_platforms(op)
        row["platforms"], row["source"] = platforms, source
        if platforms is None:
            row["status"] = "unknown"
        elif platforms == ("graph",):
            row["status"] = "graph"
        elif platforms == ("Deprecated",):
            row["status"] = "unknown"
            row["source"] = f"documented as Deprecated in 2.10, no platforms ({source})"
        elif "Ascend" not in platforms:
            row["status"] = "violation"
            row["problems"].insert(0, f"not documented for Ascend ({' '.join(platforms)}; {source})")
        else:
            row["status"] = "ok"
        if row["problems"]:
            row["status"] = "violation"
    return table


def audit_net(name: str, net: nn.Cell, x, target, lr: Optional[float] = None) -> dict:
    """Audit an Ascend-form network on inputs ``x`` (images) and ``target`` (soft labels), in GRAPH mode: its
    inference graph (float32, eval), then the trainer's O2 training step over it (:func:`ascend_train_step`,
    AdamW at ``lr``; ``net`` is put under O2 in place). The result holds ``'step'``, that step, compiled for
    inputs of these shapes (a call in GRAPH mode runs the audited graph)."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net.set_train(False)
        infer = audit_graph(graph_primitives(net, x))
        step = ascend_train_step(net, lr=lr)
        step.network.set_train(True)
        train = audit_graph(graph_primitives(step.graphs["step"], x, target))
    finally:
        ms.set_context(mode=previous)
    return {"name": name, "infer": infer, "train": train, "step": step}


def network_signature(net: nn.Cell) -> tuple:
    """Cells (name, class) and parameters (name, shape) of a built network: equal for the same network."""
    return (tuple((n, type(c).__name__) for n, c in net.cells_and_names()),
            tuple((p.name, tuple(p.shape)) for p in net.get_parameters()))


def audit_model(name: str, full_size: bool = False, batch: int = 2, num_classes: int = 10,
                seen: Optional[dict] = None) -> dict:
    """Audit the Ascend form of ``name`` (see :func:`audit_net`). ``full_size`` builds the registered architecture
    at its input size; otherwise the small test configuration of its ``default_cfg`` (same operators, smaller
    shapes, much faster to compile). ``seen`` (a dict kept over calls): a model whose built network and input are
    identical to one audited before (depth variants share their small test configuration) takes that model's
    result instead of compiling the same graphs again (``'same_as'`` names it)."""
    from ..models import small_instance_kwargs
    kwargs, (c, h, w) = small_instance_kwargs(name, full=full_size)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32))
    target = ms.Tensor(np.eye(num_classes, dtype=np.float32)[np.arange(batch) % num_classes])
    ms.set_seed(0)
    net = build_ascend_form(name, num_classes=num_classes, **kwargs)
    key = ((batch, c, h, w), network_signature(net))
    if seen is not None and key in seen:
        return dict(seen[key], name=name, same_as=seen[key]["name"])
    result = audit_net(name, net, x, target)
    del result["step"]
    if seen is not None:
        seen[key] = result
    return result


# The representatives as CI audits and trains them (and the README's O2 digits table): each one's code path (the
# same cell classes and formulations) at the smallest widths, depths and windows that keep it: the model's small
# instance (models.small_instance_kwargs) with these overrides, at this square input side; 3x3 attention windows
# instead of 7x7 run the same gather code with 9 instead of 49 slices.
_SWIN = dict(img_size=32, patch_size=2)
_SAN = dict(kernels=(3, 3, 3, 3, 3), base_width=16, share_planes=4)
CI_OVERRIDES = {
    "acmix_resnet26": (dict(k_att=3), 64),
    "acmix_swin_tiny": (_SWIN, 32),
    "acmix_pvt_tiny": (dict(img_size=32, embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8)), 32),
    "acmix_san10": (_SAN, 64),
    "san10_pairwise": (_SAN, 64),
    "swin_tiny_dw": (_SWIN, 32),
    "deit_tiny_relu": (dict(patch_size=4), 32),
    "van_b0": (dict(embed_dims=(16, 32, 64, 128)), 32),
    "xvolution_resnet34": ({}, 32),
}


def _ci_instances() -> Dict[str, tuple]:
    from ..models import small_instance_kwargs
    out = {}
    for name, (overrides, side) in CI_OVERRIDES.items():
        kwargs, size = small_instance_kwargs(name, input_size=side, **overrides)
        out[name] = (kwargs, size[-1])
    return out


SMALL_CONFIGS = _ci_instances()  # name -> (create_model kwargs, square input side)
# O2 digits training of a representative: AdamW, batch, steps, held-out images (and per model what differs)
DIGITS = dict(lr=1e-3, batch=8, steps=20, pool=4, val=48)
# the ReLU-attention DeiT learns slowly: at lr 1e-3 (or 5e-3) it stays at chance over 40-60 steps; measured
# at 2e-3 over 100 steps (its steps are the cheapest of the nine): 2.32 -> 1.87. ACmix-ResNet's float16 steps are
# the dearest (20 took 40 s on 2 cores, half the default suite's cost of this model) and it learns fastest
# (2.31 -> 0.24 over 20): 10 steps.
DIGITS_OVERRIDES: Dict[str, dict] = {"deit_tiny_relu": dict(lr=2e-3, batch=16, steps=100),
                                     "acmix_resnet26": dict(steps=10)}
PROBE_BATCHES = 2  # the loss is compared before and after training on the first training batches


def digits_arrays(side: int):
    """scikit-learn's digits (shuffled with seed 0) as (N, 3, side, side) float32 in [-1, 1] (nearest upsampling
    of the 8x8 images; ``side`` a multiple of 8) and their labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    rep = side // 8
    images = np.kron(d.images[order] / 8.0 - 1.0, np.ones((rep, rep)))[:, None].repeat(3, 1).astype(np.float32)
    return images, d.target[order]


def o2_digits_training(step, side: int, batch: int = DIGITS["batch"], steps: int = DIGITS["steps"],
                       pool: int = DIGITS["pool"], val: int = DIGITS["val"]) -> dict:
    """Train with a compiled :func:`ascend_train_step` (GRAPH mode, inputs ``(batch, 3, side, side)``; its optimizer
    and learning rate) on digits for ``steps`` steps cycling over the first ``pool`` batches; the step handles
    overflow as in the trainer: a step whose gradients are not finite skips its update and halves the loss scale.
    The loss on the first :data:`PROBE_BATCHES` training batches is taken with the step's forward (training mode,
    no update; PYNATIVE) before and after training: ``loss_before`` / ``loss_after`` (a few dozen steps over fresh
    batches leave the small ViTs at chance level with a noisy loss; a small pool seen several times shows any
    working network learning). Then the held-out top-1 on the next ``val`` images after the pool (PYNATIVE, one
    batch). Returns ``{'losses', 'loss_before', 'loss_after', 'skipped', 'loss_scale', 'top1', ...}``."""
    images, labels = digits_arrays(side)
    onehot = np.eye(10, dtype=np.float32)[labels]
    batches = [(ms.Tensor(images[i * batch:(i + 1) * batch]), ms.Tensor(onehot[i * batch:(i + 1) * batch]))
               for i in range(pool)]
    losses, skipped = [], 0
    previous = ms.get_context("mode")

    def pynative(fn):
        ms.set_context(mode=ms.PYNATIVE_MODE)
        try:
            return fn()
        finally:
            ms.set_context(mode=previous)

    def probe():
        return float(np.mean([float(step.loss(*b).asnumpy()) for b in batches[:PROBE_BATCHES]]))

    step.network.set_train(True)
    before = pynative(probe)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for i in range(steps):
            loss, finite = step(*batches[i % pool])
            loss = float(loss.asnumpy())
            if not (bool(finite.asnumpy()) and np.isfinite(loss)):
                skipped += 1  # overflow: the step skipped its update and halved the loss scale
                continue
            losses.append(loss)
    finally:
        ms.set_context(mode=previous)
    after = pynative(probe)
    step.network.set_train(False)
    start = pool * batch
    logits = pynative(lambda: step.network(ms.Tensor(images[start:start + val])).asnumpy())
    top1 = 100.0 * float((logits.argmax(1) == labels[start:start + val]).mean())
    return {"losses": losses, "loss_before": before, "loss_after": after, "skipped": skipped,
            "loss_scale": float(step.scaler.scale_value.asnumpy()), "top1": top1, "val": val, "batch": batch,
            "steps": steps, "pool": pool}


def audit_and_train_small(name: str) -> dict:
    """A representative's small CI instance (:data:`SMALL_CONFIGS`) in its Ascend form: the audit of its inference
    graph and O2 training step (:func:`audit_net`), then :func:`o2_digits_training` on that compiled step.
    Returns the audit result (without the step) with ``'digits'`` added."""
    import time
    kwargs, side = SMALL_CONFIGS[name]
    images, labels = digits_arrays(side)
    settings = dict(DIGITS_OVERRIDES.get(name, {}))
    lr = settings.pop("lr", DIGITS["lr"])
    batch = settings.get("batch", DIGITS["batch"])
    ms.set_seed(0)
    start = time.time()
    net = build_ascend_form(name, num_classes=10, **kwargs)
    result = audit_net(name, net, ms.Tensor(images[:batch]), ms.Tensor(np.eye(10, dtype=np.float32)[labels[:batch]]),
                       lr=lr)
    audited = time.time()
    result["digits"] = dict(o2_digits_training(result.pop("step"), side, **settings), lr=lr)
    result["digits"]["seconds"] = {"audit": round(audited - start, 1), "train": round(time.time() - audited, 1)}
    return result


def digits_table(results: List[dict]) -> str:
    """Markdown table of :func:`audit_and_train_small` results: the O2 digits loss and held-out top-1 per
    representative."""
    path_of = {name: path for path, name in REPRESENTATIVES.items()}
    d0 = DIGITS
    lines = [f"O2 (float16, dynamic loss scale from 1024), AdamW lr {d0['lr']:g} unless stated, {d0['steps']} steps "
             f"cycling over {d0['pool']} batches of {d0['batch']} digits images ({d0['pool'] * d0['batch']} "
             f"images) at the instance's input size; the loss on the first {PROBE_BATCHES} training batches before "
             f"and after; the held-out top-1 on the next {d0['val']} images (chance: 10 %):",
             "", "| code path | model (small CI instance) | O2 loss before → after | skipped steps (overflow) | "
             "held-out top-1 |", "|---|---|---|---:|---:|"]
    order = list(REPRESENTATIVES.values())
    for r in sorted(results, key=lambda r: order.index(r["name"]) if r["name"] in order else len(order)):
        d = r["digits"]
        extra = "" if (d["lr"], d["steps"], d["batch"]) == (d0["lr"], d0["steps"], d0["batch"]) else \
            f" (lr {d['lr']:g}, {d['steps']} steps of {d['batch']})"
        lines.append(f"| {path_of.get(r['name'], '-')} | {r['name']}{extra} | {d['loss_before']:.3f} → "
                     f"{d['loss_after']:.3f} | {d['skipped']} | {d['top1']:.1f} % |")
    return "\n".join(lines)


def findings(result: dict) -> Dict[str, List[str]]:
    """``{'violation': [...], 'unknown': [...]}``: ``graph: primitive: problem`` lines of one audited model."""
    out = {"violation": [], "unknown": []}
    for graph in ("infer", "train"):
        for op, row in result[graph].items():
            if row["status"] == "violation":
                out["violation"] += [f"{graph}: {op}: {p}" for p in row["problems"]]
            elif row["status"] == "unknown":
                out["unknown"].append(f"{graph}: {op}: {row['source']}")
    return out


def _platform_cell(row: dict) -> str:
    if row["platforms"] == ("graph",):
        return "graph (no kernel)"
    text = " ".join(row["platforms"]) if row["platforms"] else "?"
    if "backward of" in row["source"]:
        text += f" (as {row['source'].split(' ')[2]})"
    return text


def model_table(result: dict) -> str:
    """Markdown table of every primitive of one model: count in each graph, float input dtypes, documented
    platforms, status and problems."""
    lines = [f"{result['name']} (Ascend form)", "",
             "| primitive | infer | train (O2) | float inputs (infer / train) | documented platforms | status |",
             "|---|---:|---:|---|---|---|"]
    for op in sorted(set(result["infer"]) | set(result["train"])):
        i, t = result["infer"].get(op), result["train"].get(op)
        row = t or i
        statuses = {r["status"] for r in (i, t) if r}
        status = "violation" if "violation" in statuses else statuses.pop()
        problems = sorted({p for r in (i, t) if r for p in r["problems"]})
        dt = " / ".join(", ".join(sorted(r["dtypes"])) or "-" if r else "-" for r in (i, t))
        lines.append(f"| {op} | {i['count'] if i else 0} | {t['count'] if t else 0} | {dt} | {_platform_cell(row)} | "
                     f"{status}{': ' + '; '.join(problems) if problems else ''} |")
    return "\n".join(lines)


def _conv_groups(result: dict) -> str:
    groups = set()
    for graph in ("infer", "train"):
        row = result[graph].get("Conv2D")
        if row:
            groups.update(row.get("groups", ()))
    grouped = sorted(g for g in groups if g > 1)
    return "none" if not groups else ("1" if not grouped else f"1 + depth-wise ({len(grouped)} sizes)"
                                      if 1 in groups else f"depth-wise ({len(grouped)} sizes)")


def summary_table(results: List[dict]) -> str:
    """One row per audited model: kernel primitives (distinct / nodes) in each graph, grouped convolutions,
    statuses, and the verdict (FAIL on a violation; unknown primitives are listed by name)."""
    lines = ["| model | infer: primitives / nodes | train (O2): primitives / nodes | Conv2D groups | "
             "documented for Ascend | derived (backward) | unknown | violations | verdict |",
             "|---|---|---|---|---:|---:|---|---:|---|"]
    for r in results:
        cells = []
        for graph in ("infer", "train"):
            kernels = {op: row for op, row in r[graph].items() if row["status"] != "graph"}
            cells.append(f"{len(kernels)} / {sum(row['count'] for row in kernels.values())}")
        both = {**r["infer"], **r["train"]}
        documented = sum(1 for row in both.values() if row["status"] == "ok" and "backward of" not in row["source"])
        derived = sum(1 for row in both.values() if row["status"] == "ok" and "backward of" in row["source"])
        unknown = sorted(op for op, row in both.items() if row["status"] == "unknown")
        found = findings(r)
        verdict = "FAIL" if found["violation"] else ("pass (unknown flagged)" if unknown else "pass")
        name = f"{r['name']} (test network of {r['same_as']})" if r.get("same_as") else r["name"]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {_conv_groups(r)} | {documented} | {derived} | "
                     f"{', '.join(unknown) or '-'} | {len(found['violation'])} | {verdict} |")
    return "\n".join(lines)


def primitive_table(results: List[dict]) -> str:
    """Every primitive over all audited models: in how many models' inference / training graphs it appears, the
    float input dtypes seen in training, its documented platforms (and where that is written), and its status."""
    agg = collections.OrderedDict()
    for r in results:
        for graph in ("infer", "train"):
            for op, row in r[graph].items():
                a = agg.setdefault(op, {"infer": 0, "train": 0, "dtypes": set(), "row": row, "status": set(),
                                        "problems": set()})
                a[graph] += 1
                if graph == "train":
                    a["dtypes"].update(row["dtypes"])
                a["status"].add(row["status"])
                a["problems"].update(row["problems"])
    lines = [f"| primitive | models (infer / train, of {len(results)}) | float inputs under O2 | documented platforms "
             "| source | status |", "|---|---|---|---|---|---|"]
    for op in sorted(agg):
        a = agg[op]
        status = "violation" if "violation" in a["status"] else sorted(a["status"])[0]
        if a["problems"]:
            status += ": " + "; ".join(sorted(a["problems"]))
        lines.append(f"| {op} | {a['infer']} / {a['train']} | {', '.join(sorted(a['dtypes'])) or '-'} | "
                     f"{_platform_cell(a['row'])} | {a['row']['source']} | {status} |")
    return "\n".join(lines)


def save_results(results: List[dict], path: str) -> None:
    """Write audit results to JSON (sets as sorted lists)."""
    import json

    def plain(v):
        if isinstance(v, (set, tuple)):
            return sorted(v) if isinstance(v, set) else list(v)
        raise TypeError(type(v))

    with open(path, "w") as f:
        json.dump([{k: r[k] for k in ("name", "infer", "train", "digits") if k in r} for r in results], f,
                  default=plain, indent=0)


def load_results(path: str) -> List[dict]:
    """Audit results written by :func:`save_results`."""
    import json
    with open(path) as f:
        results = json.load(f)
    for r in results:
        for graph in ("infer", "train"):
            for row in r[graph].values():
                row["dtypes"], row["groups"] = set(row["dtypes"]), set(row["groups"])
                row["platforms"] = tuple(row["platforms"]) if row["platforms"] else None
    return results
