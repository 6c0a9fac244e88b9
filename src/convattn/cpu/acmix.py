"""ACmix's data movement as fused CPU kernels: the conv path's input (q, k, v mixed over the head axis by ``fc`` and
reordered for the grouped ``dep_conv``, as concat + 1x1 convolution + transpose compute it) and the stride-2
subsampling of the queries, each with its gradient (``kernels/acmix.cc``)."""
import mindspore as ms
from mindspore import nn

from .primitives import Float32Cell, custom_primitive, require_library

__all__ = ["FusedAcmixMix", "FusedSubsample2", "FusedGroupConv2d"]


class FusedAcmixMix(Float32Cell):
    """``construct(q, k, v, w, b)``: q, k, v ``(B, G*D, H, W)`` (G heads of D channels), ``w`` the ``fc`` weight
    ``(K, 3G, 1, 1)``, ``b`` its bias ``(K,)`` -> ``(B, D*K, H, W)`` with channel ``d*K + i`` =
    ``b_i + sum_j w_ij src_j[(j mod G)*D + d]`` (``src_j`` = q, k, v for ``j // G`` = 0, 1, 2)."""

    fused = True

    def __init__(self) -> None:
        super().__init__()
        require_library()
        grad = custom_primitive("acmix_mix_grad", "", lambda q, k, v, w, b, df: (q, k, v, w, b),
                                out_dtype=lambda q, k, v, w, b, df: (q, k, v, w, b))

        def bprop(q, k, v, w, b, out, dout):
            return grad(q, k, v, w, b, dout)

        def out_shape(q, k, v, w, b):
            return (q[0], (q[1] // (w[1] // 3)) * w[0], q[2], q[3])

        self.op = custom_primitive("acmix_mix", "", out_shape, bprop, out_dtype=lambda q, k, v, w, b: q)

    def conv_macs(self, inputs, output) -> int:
        """The ``fc`` 1x1 convolution it performs: every output element mixes the 3G head maps."""
        n = 1
        for d in output.shape:
            n *= int(d)
        return n * int(inputs[3].shape[1])

    def construct(self, q, k, v, w, b):
        f32 = ms.float32
        return self.op(q.astype(f32), k.astype(f32), v.astype(f32), w.astype(f32), b.astype(f32)).astype(q.dtype)


class FusedSubsample2(Float32Cell):
    """``x[:, :, ::2, ::2]`` of an NCHW map (``convattn.layers.helpers.subsample2d`` with stride 2)."""

    fused = True

    def __init__(self) -> None:
        super().__init__()
        require_library()
        grad = custom_primitive("subsample2_t", "", lambda dy, x: x)

        def bprop(x, out, dout):
            return (grad(dout, x),)

        self.op = custom_primitive("subsample2", "", lambda x: (x[0], x[1], (x[2] + 1) // 2, (x[3] + 1) // 2), bprop,
                                   inputs=1)

    def construct(self, x):
        return self.op(x.astype(ms.float32)).astype(x.dtype)


class _GroupConvKernel(Float32Cell):
    """The grouped convolution's kernel call, float32 inside (a sub-cell, so AMP flags cannot cast its inputs)."""

    def __init__(self) -> None:
        super().__init__()
        require_library()
        dx_op = custom_primitive("group_conv_dx", "", lambda dy, w, x: x, inputs=3)
        dw_op = custom_primitive("group_conv_dw", "", lambda x, dy, w: w, inputs=3)

        def bprop(x, w, out, dout):
            return dx_op(dout, w, x), dw_op(x, dout, w)

        self.op = custom_primitive("group_conv", "", lambda x, w: (x[0], w[0], x[2], x[3]), bprop)

    def construct(self, x, w):
        f32 = ms.float32
        return self.op(x.astype(f32), w.astype(f32)).astype(x.dtype)


class FusedGroupConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same ``weight``) with groups > 1, an odd k x k kernel, stride 1, zero padding k // 2 and no bias
    (ACmix's ``dep_conv``: 9 shifted maps in and the heads out per group), run by ``group_conv`` and its two
    gradients: 8 output pixels x the group's outputs in registers over inputs x taps."""

    fused = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=1, pad_mode="pad", padding=kernel_size // 2,
                         group=group, has_bias=False)
        self.kernel = _GroupConvKernel()

    def construct(self, x):
        return self.kernel(x, self.weight)

