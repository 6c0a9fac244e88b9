"""The CPU backend's building blocks: ``ops.Custom`` (AOT) primitives bound to the runtime's kernel library, and
the float32 cell every fused cell derives from. Only :mod:`convattn.cpu` uses them."""
import mindspore as ms
from mindspore import nn, ops

from .runtime import runtime

__all__ = ["custom_primitive", "Float32Cell", "require_library"]


def require_library() -> str:
    """The kernel library's path; an error naming why when the runtime is unavailable (the cells of this package
    are only built when it is: :func:`convattn.layers.targets.decide_form`)."""
    rt = runtime()
    if not rt.available:
        raise RuntimeError(f"the convattn CPU backend is unavailable: {rt.reason}")
    return rt.path


def custom_primitive(func: str, mode: str, out_shape, bprop=None, inputs: int = 2, tag: str = "", out_dtype=None):
    """One Custom primitive. ``tag`` names the geometry its shape function and bprop close over: GRAPH mode
    identifies Custom primitives by their attributes (two ``diff`` ops of different footprints would otherwise
    share one shape inference in the backward graph), so every geometry gets its own attribute value.
    ``out_dtype`` (default: the dtype of a float input, by ``inputs``) for kernels with other inputs or several
    outputs."""
    name = f"{func}_{mode}" if mode else func
    dtype = out_dtype or {1: lambda a: a, 2: lambda a, b: a, 3: lambda a, b, c: b,
                          6: lambda a, b, c, d, e, f: a}[inputs]
    op = ops.Custom(f"{require_library()}:{name}", out_shape=out_shape, out_dtype=dtype, func_type="aot",
                    bprop=bprop)
    op.add_prim_attr("convattn_geometry", tag)
    return op


class Float32Cell(nn.Cell):
    """A cell around float32 kernels. AMP (``to_float(float16)``, O2/O3) flags every sub-cell, and a flagged cell
    in PYNATIVE mode casts the inputs of each primitive it runs to float16, past the casts to float32 in
    ``construct``; these cells keep the float32 flag instead (their callers' dtype comes back on the output)."""

    def add_flags_recursive(self, **flags):
        if flags.get("fp16") or flags.get("bf16"):
            flags.update(fp16=False, bf16=False, fp32=True)
        return super().add_flags_recursive(**flags)
