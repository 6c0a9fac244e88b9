"""ACmix: shared 1x1 projections feeding a local self-attention path and a shift-convolution path.

Refer to "On the Integration of Self-Attention and Convolution" (Pan et al., CVPR 2022, arXiv 2111.14556);
official code LeapLabTHU/ACmix @ 81dddb6 (``ResNet/test_bottleneck.py`` for the convolution-style module,
``Swin-Transformer/models/swin_transformer_acmix.py`` for the window form, which lives in
:mod:`convattn.layers.window_attention`).

Behaviour kept from the official code because it changes outputs:

* ``conv1/conv2/conv3`` (q, k, v) and ``conv_p`` (position encoding) have biases; ``fc`` has no bias in the
  convolution-style module (it has one in the Swin form); ``dep_conv`` has **no bias** in both (the official
  ``reset_parameters`` assigns the ``None`` returned by its fill helper to the bias).
* The attention path pads by ``(dilation * (kernel_att - 1) + 1) // 2`` (reflection) but unfolds *without*
  dilation; only configurations for which this keeps the feature-map size are accepted (see ``ACmix``).
* The conv path concatenates q, k, v as ``(B, 3*head, head_dim, H*W)``, mixes the ``3*head`` axis with ``fc`` to
  ``k_conv**2`` maps, and reorders to channel ``d * k_conv**2 + i`` before the grouped ``dep_conv``
  (``groups=head_dim``): output channel o belongs to group ``o // head``, whereas the attention path emits
  channel ``h * head_dim + d``. The reshape/permute order is reproduced exactly.
* ``dep_conv`` starts as "shift" kernels (input slot i of every output channel is a one-hot 3x3 at
  ``(i // k, i % k)``); ``rate1 = rate2 = 0.5``.

Ascend note: MindSpore on Ascend runs grouped convolution only when it is depth-wise, and ``dep_conv`` is not
(``9*head_dim`` inputs, ``out`` outputs, ``head_dim`` groups). :class:`ACmixConvPath` therefore also has a
numerically identical depth-wise form: broadcast each group's k*k inputs to the ``head`` output channels of that
group, run a depth-wise conv with the weight reshaped ``(out, k*k, k, k) -> (out*k*k, 1, k, k)``, and sum each
block of k*k. It is the form of networks built for the Ascend target (:mod:`convattn.layers.targets`) and
selectable on CPU/GPU with ``depthwise_conv=True``; checkpoints of either form load into the other by a reshape
(:func:`convattn.layers.targets.map_between_forms`).
"""
from typing import Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .conv import conv2d
from .helpers import coordinate_grid, subsample
from .local_attention import BlockedWindowAttention
from .targets import cpu_cell, current_form, select_form
from .window_gather import LocalWindowGather

__all__ = ["ACmix", "ACmixConvPath", "ConvPathMixin", "GroupedConvForm", "DepthwiseConvForm", "UnfoldWindowAttention",
           "BlockedAcmixAttention", "shift_kernel", "default_depthwise_conv", "acmix_position"]


def default_depthwise_conv() -> bool:
    """True when the build target (:func:`convattn.layers.targets.resolve_target`) runs the depth-wise form."""
    return select_form("acmix_conv") == "depthwise"


def shift_kernel(out_channels: int, kernel_size: int = 3) -> np.ndarray:
    """The official shift initialisation: ``(out, k*k, k, k)``, slot i one-hot at ``(i // k, i % k)``."""
    k = kernel_size
    base = np.zeros((k * k, k, k), np.float32)
    for i in range(k * k):
        base[i, i // k, i % k] = 1.0
    return np.tile(base[None], (out_channels, 1, 1, 1))


# the position grid moved to the neutral helpers module (SAN reads it too); the old name stays importable
acmix_position = coordinate_grid


class ConvPathMixin:
    """Builds and runs the ACmix convolution path on a cell, naming its children ``fc`` and ``dep_conv`` as the
    official modules do (used by :class:`ACmixConvPath`, :class:`ACmix` and the Swin ``WindowAttentionACmix``)."""

    def init_conv_path(self, head: int, head_dim: int, out_planes: int, kernel_conv: int = 3, stride: int = 1,
                       fc_bias: bool = False, depthwise_conv: Optional[bool] = None,
                       fc_maps: Optional[int] = None) -> None:
        """Create ``fc`` and ``dep_conv`` as direct children of the cell (official names).

        ``fc_maps`` is the number of head maps ``fc`` mixes (default ``3 * head``: q, k and v with ``head`` heads
        each); ACmix-SAN passes its own count because SAN's q/k projections are narrower than v.
        """
        if kernel_conv < 1 or kernel_conv % 2 == 0:
            raise ValueError(f"kernel_conv must be odd so that padding kernel_conv // 2 centres it "
                             f"(the official code hard-codes padding 1 for kernel_conv=3), got {kernel_conv}")
        if out_planes % head_dim != 0:
            raise ValueError(f"out_planes={out_planes} must be a multiple of head_dim={head_dim} (dep_conv groups)")
        self.head = head
        self.head_dim = head_dim
        self.out_planes = out_planes
        self.kernel_conv = kernel_conv
        self.kk = kernel_conv * kernel_conv
        self.outs_per_group = out_planes // head_dim
        requested = None if depthwise_conv is None else ("depthwise" if depthwise_conv else "grouped")
        self.depthwise_conv = select_form("acmix_conv", requested, type(self).__name__) == "depthwise"
        pad = kernel_conv // 2
        # 1x1 convolutions through the conv2d factory: the CPU backend's GEMM form where the network uses it
        self.fc = conv2d(3 * head if fc_maps is None else fc_maps, self.kk, 1, has_bias=fc_bias, pad_mode="valid")
        if self.depthwise_conv:
            ch = out_planes * self.kk
            self.dep_conv = nn.Conv2d(ch, ch, kernel_conv, stride=stride, pad_mode="pad", padding=pad,
                                      group=ch, has_bias=False)
        else:  # the CPU backend's grouped kernel where the network uses it (stride 1), else nn.Conv2d
            fused = cpu_cell("group_conv2d", self.kk * head_dim, out_planes, kernel_conv, stride, head_dim, False)
            self.dep_conv = fused if fused is not None else nn.Conv2d(
                self.kk * head_dim, out_planes, kernel_conv, stride=stride, pad_mode="pad", padding=pad,
                group=head_dim, has_bias=False)
        self.conv_form = self._conv_form()
        self.reset_shift()

    def _conv_form(self):
        """The conv-path formulation object matching ``depthwise_conv`` (no parameters: ``dep_conv`` stays a
        direct child under its official name)."""
        if self.depthwise_conv:
            return DepthwiseConvForm(self.head_dim, self.outs_per_group, self.kk)
        return GroupedConvForm()

    def reset_shift(self) -> None:
        """Set ``dep_conv`` to the official shift kernels (in either formulation)."""
        kernel = shift_kernel(self.out_planes, self.kernel_conv).reshape(self.dep_conv.weight.shape)
        self.dep_conv.weight.set_data(Tensor(kernel, self.dep_conv.weight.dtype))

    def extend_repr(self):
        return (f"head={self.head}, head_dim={self.head_dim}, out_planes={self.out_planes}, "
                f"kernel_conv={self.kernel_conv}, depthwise_conv={self.depthwise_conv}")

    def conv_path(self, f_all, h: int, w: int):
        """``(B, 3*head, head_dim, H*W) -> (B, out_planes, Ho, Wo)``."""
        b = f_all.shape[0]
        f = self.fc(f_all)  # (B, k*k, head_dim, H*W)
        f = ops.transpose(f, (0, 2, 1, 3)).reshape(b, self.head_dim * self.kk, h, w)
        return self.conv_form.collapse(self.dep_conv(self.conv_form.expand(f)))


class GroupedConvForm(nn.Cell):
    """The official conv path: ``dep_conv`` is one grouped Conv2D (``groups=head_dim``) on the reordered maps."""
    form = "grouped"

    def expand(self, f):
        return f

    def collapse(self, y):
        return y


class DepthwiseConvForm(nn.Cell):
    """The Ascend-legal conv path: each group's k*k input maps are broadcast to the group's output channels
    (output o = g*outs_per_group + j reads group g), a depth-wise Conv2D runs on them, and each block of k*k
    results is summed: the grouped convolution, term by term."""
    form = "depthwise"

    def __init__(self, head_dim: int, outs_per_group: int, kk: int) -> None:
        super().__init__()
        self.head_dim, self.outs_per_group, self.kk = head_dim, outs_per_group, kk

    def expand(self, f):
        b, h, w = f.shape[0], f.shape[2], f.shape[3]
        f = f.reshape(b, self.head_dim, 1, self.kk, h, w)
        f = ops.broadcast_to(f, (b, self.head_dim, self.outs_per_group, self.kk, h, w))
        return f.reshape(b, self.head_dim * self.outs_per_group * self.kk, h, w)

    def collapse(self, y):
        b, ho, wo = y.shape[0], y.shape[2], y.shape[3]
        return y.reshape(b, self.head_dim * self.outs_per_group, self.kk, ho, wo).sum(2)


class ACmixConvPath(ConvPathMixin, nn.Cell):
    """The ACmix convolution path, shared by the convolution-style module and the Swin form.

    Input ``f_all`` of shape ``(B, 3*head, head_dim, H*W)`` (q heads, then k heads, then v heads) and the map
    size ``(H, W)``. ``fc`` (1x1, ``3*head -> k*k``) mixes the head axis; the result is reordered to
    ``(B, head_dim*k*k, H, W)`` (channel ``d*k*k + i``) and fed to ``dep_conv`` (k x k, stride ``stride``,
    ``groups=head_dim``, no bias, shift-initialised). Output ``(B, out_planes, Ho, Wo)``.

    Args:
        head: number of heads; head_dim: channels per head; out_planes: output channels (a multiple of head_dim).
        kernel_conv: odd kernel of ``dep_conv`` (official: 3, padding 1).
        stride: stride of ``dep_conv``.
        fc_bias: ``fc`` bias (False in the ResNet module, True in the Swin form).
        depthwise_conv: True for the depth-wise (Ascend-legal) formulation, False for the grouped one,
            None: the build target's form (:mod:`convattn.layers.targets`).
    """

    def __init__(self, head: int, head_dim: int, out_planes: int, kernel_conv: int = 3, stride: int = 1,
                 fc_bias: bool = False, depthwise_conv: Optional[bool] = None) -> None:
        super().__init__()
        self.init_conv_path(head, head_dim, out_planes, kernel_conv, stride, fc_bias, depthwise_conv)

    def construct(self, f_all, h: int, w: int):
        return self.conv_path(f_all, h, w)


class _AcmixAttentionForm(nn.Cell):
    """One formulation of ACmix's sliding-window attention (no parameters). ``construct(q, k, v, pe, q_pe)``: q
    ``(B*head, d, Ho, Wo)`` scaled and on the stride grid, k and v ``(B*head, d, H, W)``, the position encoding
    pe ``(1, d, H, W)`` and q_pe = pe on the stride grid -> ``(B*head, d, Ho, Wo)``, with logits
    ``q_i . (k_j + pe_i - pe_j)`` over each query's reflection-padded k x k window."""
    form = ""


class UnfoldWindowAttention(_AcmixAttentionForm):
    """The official formulation: k, pe and v gathered k*k times (:class:`LocalWindowGather`, ONNX-exportable when
    export-safe), broadcast multiply, softmax over the taps, weighted sum."""
    form = "unfold"

    def __init__(self, gather: LocalWindowGather) -> None:
        super().__init__()
        self.gather = gather

    def construct(self, q, k, v, pe, q_pe):
        unfold_k = self.gather(k)  # (B*head, head_dim, k_att^2, Ho, Wo)
        unfold_rpe = self.gather(pe)  # (1, head_dim, k_att^2, Ho, Wo)
        att = (ops.expand_dims(q, 2) * (unfold_k + ops.expand_dims(q_pe, 2) - unfold_rpe)).sum(1)
        att = ops.softmax(att, axis=1)  # (B*head, k_att^2, Ho, Wo)
        return (ops.expand_dims(att, 1) * self.gather(v)).sum(2)


class BlockedAcmixAttention(_AcmixAttentionForm):
    """Blocked dense-matmul window attention (:class:`BlockedWindowAttention`, every backend): ``q_i . pe_i`` is
    constant over j and cancels in the softmax, so the keys are ``k - pe``."""
    form = "fast"

    def __init__(self, kernel_att: int, stride: int, padding: int, block: int) -> None:
        super().__init__()
        self.local_attn = BlockedWindowAttention(kernel_att, stride=stride, padding=padding, block=block)

    def construct(self, q, k, v, pe, q_pe):
        return self.local_attn(q, k - pe, v)


class ACmix(ConvPathMixin, nn.Cell):
    """The convolution-style ACmix module (the 3x3-conv replacement of ACmix-ResNet).

    ``(B, in_planes, H, W) -> (B, out_planes, ceil(H/stride), ceil(W/stride))``:
    ``rate1 * attention(q, k, v) + rate2 * conv_path(q, k, v)``.

    Args:
        in_planes, out_planes: channels; ``out_planes`` must be divisible by ``head``.
        kernel_att: attention window (odd; reflection-padded, stride ``stride``).
        head: attention heads (head_dim = out_planes // head).
        kernel_conv: kernel of the convolution path (odd; official 3).
        stride: output stride of both paths.
        dilation: enters only the attention padding formula, as in the official code; a value that would change
            the output size is rejected.
        depthwise_conv: conv-path formulation (see :class:`ACmixConvPath`); None: the build target's (depth-wise on
            Ascend only, :mod:`convattn.layers.targets`).
        export_safe: build the attention gather in its ONNX-exportable form (None: the form being built).
        attn_impl: ``'auto'`` (default): the build target's form (:mod:`convattn.layers.targets`): ``'fused'`` on
            CPU where the fused kernels are available, else ``'fast'``.
            ``'fused'``: logits ``q_i . (k_j - pe_j)`` and the weighted sum of values each one ``ops.Custom`` kernel
            (:mod:`convattn.cpu.window`, CPU, stride 1 or 2): nothing larger than the
            ``(B*head, k*k, H, W)`` softmax exists, forward or backward. ``'fast'``: blocked dense-matmul window
            attention (:mod:`convattn.layers.local_attention`, every backend, no k*k-expanded tensors).
            ``'unfold'``: the official formulation (k*k copies of k, pe, v). All equal to float32 rounding, forward
            and gradients; an export-safe layer always runs ``'unfold'`` (its slice gather is the ONNX-exportable
            form). ``'fused'`` comes from the CPU backend (:mod:`convattn.cpu.window`).
        attn_block: target query-block side of the ``'fast'`` path.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4, kernel_conv: int = 3,
                 stride: int = 1, dilation: int = 1, depthwise_conv: Optional[bool] = None,
                 export_safe: Optional[bool] = None, attn_impl: str = "auto", attn_block: int = 8) -> None:
        if attn_impl not in ("auto", "fused", "fast", "unfold"):
            raise ValueError(f"attn_impl must be 'auto', 'fused' (CPU kernel), 'fast' (blocked matmul attention) or "
                             f"'unfold' (official gather), got {attn_impl!r}")
        attn_impl = select_form("acmix_attention", attn_impl, "ACmix")  # before building: a bad request fails first
        if head < 1 or out_planes % head != 0:
            raise ValueError(f"out_planes={out_planes} must be divisible by head={head}; "
                             f"choose head among the divisors of {out_planes}")
        if stride < 1 or dilation < 1 or kernel_att < 1:
            raise ValueError(f"kernel_att, stride and dilation must be >= 1, got {kernel_att}, {stride}, {dilation}")
        super().__init__()
        # fc and dep_conv become direct children, named as in the official module (fc.weight, dep_conv.weight)
        self.init_conv_path(head, out_planes // head, out_planes, kernel_conv, stride, fc_bias=False,
                            depthwise_conv=depthwise_conv)
        padding_att = (dilation * (kernel_att - 1) + 1) // 2
        if 2 * padding_att != kernel_att - 1:
            raise ValueError(
                f"kernel_att={kernel_att} with dilation={dilation}: the official padding "
                f"(dilation*(kernel_att-1)+1)//2 = {padding_att} with an undilated {kernel_att}x{kernel_att} unfold "
                f"does not keep the feature-map size; use an odd kernel_att with dilation=1")
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.kernel_att = kernel_att
        self.stride = stride
        self.dilation = dilation
        self.padding_att = padding_att
        self.scaling = float(self.head_dim) ** -0.5
        self.rate1 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate1")
        self.rate2 = Parameter(Tensor(np.full((1,), 0.5, np.float32)), name="rate2")
        self.conv1 = conv2d(in_planes, out_planes, 1, has_bias=True, pad_mode="valid")
        self.conv2 = conv2d(in_planes, out_planes, 1, has_bias=True, pad_mode="valid")
        self.conv3 = conv2d(in_planes, out_planes, 1, has_bias=True, pad_mode="valid")
        self.conv_p = conv2d(2, self.head_dim, 1, has_bias=True, pad_mode="valid")
        self.unfold = LocalWindowGather(kernel_att, stride=stride, dilation=1, padding=padding_att,
                                        pad_mode="reflect", export_safe=export_safe)
        self.attn_impl = attn_impl
        self.attn_block = attn_block
        self.attention = self._attention_form()
        # the CPU backend's fused data movement (None elsewhere): the conv path's input straight from q, k, v
        # (concat + fc + transpose in one kernel; the grouped form only) and the queries' stride-2 subsampling
        self.mix = cpu_cell("acmix_mix") if not self.depthwise_conv else None
        self.fc_zero_bias = Tensor(np.zeros((self.kk,), np.float32)) if self.mix is not None else None  # fc: no bias
        self.subsample = subsample(stride)  # q and pe on the stride grid (identity at stride 1)

    def _attention_form(self):
        """The attention formulation, chosen once: ``'unfold'`` when the gather is export-safe (the
        ONNX-exportable form) or asked for, the CPU backend's ``'fused'`` cell where ``attn_impl`` resolved to it
        (stride 1 or 2; else the blocked form), else ``'fast'``."""
        if self.unfold.export_safe or self.attn_impl == "unfold":
            return UnfoldWindowAttention(self.unfold)
        if self.attn_impl == "fused":
            fused = cpu_cell("acmix_window_attention", self.kernel_att, self.stride, self.padding_att)
            if fused is not None:
                return fused
        return BlockedAcmixAttention(self.kernel_att, self.stride, self.padding_att, self.attn_block)

    def attention_form(self) -> str:
        """The attention formulation this layer runs: ``'fused'``, ``'fast'`` or ``'unfold'``."""
        return self.attention.form

    def extend_repr(self):
        return (f"in_planes={self.in_planes}, out_planes={self.out_planes}, kernel_att={self.kernel_att}, "
                f"head={self.head}, kernel_conv={self.kernel_conv}, stride={self.stride}, dilation={self.dilation}, "
                f"attn_impl={self.attn_impl}")

    def extra_macs(self, inputs, output) -> int:
        """The local attention's products: q . (k + pe_i - pe_j) and sum_j a_ij v_j, each out_planes x k_att^2
        per output pixel (the 1x1 projections and the conv path are Conv2d cells, counted by their hooks)."""
        n, ho, wo = output.shape[0], output.shape[2], output.shape[3]
        return 2 * n * self.out_planes * self.kernel_att * self.kernel_att * ho * wo

    def construct(self, x):
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        b, c, h, w = q.shape
        bh, hd = b * self.head, self.head_dim
        pe = self.conv_p(coordinate_grid(h, w, q.dtype))  # (1, head_dim, H, W)
        q_att = q.reshape(bh, hd, h, w) * self.scaling
        k_att = k.reshape(bh, hd, h, w)
        v_att = v.reshape(bh, hd, h, w)
        q_att, q_pe = self.subsample(q_att), self.subsample(pe)
        out_att = self.attention(q_att, k_att, v_att, pe, q_pe)  # (B*head, head_dim, Ho, Wo)
        out_att = out_att.reshape(b, self.out_planes, out_att.shape[2], out_att.shape[3])

        if self.mix is not None:
            out_conv = self.dep_conv(self.mix(q, k, v, self.fc.weight, self.fc_zero_bias))
        else:
            hw = h * w
            f_all = ops.concat((q.reshape(b, self.head, hd, hw), k.reshape(b, self.head, hd, hw),
                                v.reshape(b, self.head, hd, hw)), 1)
            out_conv = self.conv_path(f_all, h, w)
        return self.rate1 * out_att + self.rate2 * out_conv
