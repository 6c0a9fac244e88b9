"""SAN's self-attention module (SAM): pairwise and patchwise local vector attention.

Refer to "Exploring Self-attention for Image Recognition" (Zhao, Jia, Koltun, CVPR 2020, arXiv 2004.13621).
Follows the official ``model/san.py::SAM`` (hszhao/SAN @ d88b022) without its CuPy kernels: every
neighbourhood is read through :class:`~convattn.layers.window_gather.LocalWindowGather` (reflection
padding, the official ``*_refpad`` semantics), so the operator runs on CPU, GPU and Ascend and exports to
ONNX when built export-safe. With the CPU backend the aggregation runs as one fused kernel
(:mod:`convattn.cpu.window`) that never builds the gathered ``k*k x C x H x W`` tensor.

For output position i and footprint R(i) (k x k taps, tap order as ``F.unfold``)::

    y_c(i) = sum_{j in R(i)} w_{c mod n_w}(i, j) * beta_c(x_j),      n_w = out_planes / share_planes

i.e. each attention-weight channel is shared by ``share_planes`` feature channels in the official
*interleaved* order (feature channel c uses weight channel c mod n_w).

* pairwise:  w(i, j) = softmax_j gamma([delta(x_i, x_j), p_i - p_j])
* patchwise: w(i, .) = gamma(delta(x_R(i)))  (no softmax)

phi, psi, beta are the 1x1 convs ``conv1``, ``conv2``, ``conv3``; gamma is ``conv_w``; the position term
is ``conv_p`` applied to the [-1, 1]-normalised coordinate grid. Parameter names equal the official ones.

Paper alternatives (constructor options; defaults reproduce the official code):

* pairwise ``relation``: ``'subtraction'`` (official) | ``'summation'`` | ``'concatenation'`` |
  ``'hadamard'`` | ``'dot'``; ``position_encoding`` on/off.
* patchwise ``relation``: ``'concatenation'`` (official) | ``'star'`` | ``'clique'``.
* ``mapping`` gamma: ``'r-l-r-l'`` (official: BN-ReLU-1x1-BN-ReLU-1x1) | ``'l-r-l'`` | ``'r-l'`` | ``'l'``,
  where R is BatchNorm + ReLU and L a 1x1 conv.
* ``kernel_size`` (footprint), ``share_planes``.
"""
from mindspore import nn, ops

from mindspore import recompute

from .helpers import coordinate_grid
from .targets import cpu_cell, current_form, select_form
from .window_gather import LocalWindowGather

__all__ = ["SAM", "PairwiseSAM", "PatchwiseSAM", "SAMBase", "PAIRWISE_RELATIONS", "PATCHWISE_RELATIONS", "MAPPINGS",
           "sa_type_name"]

PAIRWISE_RELATIONS = ("subtraction", "summation", "concatenation", "hadamard", "dot")
PATCHWISE_RELATIONS = ("concatenation", "star", "clique")
MAPPINGS = ("r-l-r-l", "l-r-l", "r-l", "l")


def sa_type_name(sa_type) -> str:
    """``0``/``'pairwise'`` -> ``'pairwise'``, ``1``/``'patchwise'`` -> ``'patchwise'`` (official ints accepted)."""
    names = {0: "pairwise", 1: "patchwise", "pairwise": "pairwise", "patchwise": "patchwise"}
    if isinstance(sa_type, bool) or sa_type not in names:
        raise ValueError(f"sa_type must be 'pairwise' (official 0) or 'patchwise' (official 1), got {sa_type!r}")
    return names[sa_type]


def _conv1x1(cin: int, cout: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, pad_mode="valid", has_bias=bias)


def _mapping(kind: str, cin: int, hidden: int, cout: int) -> nn.SequentialCell:
    """gamma. 'r-l-r-l' keeps the official indices: 0 BN, 1 ReLU, 2 conv (no bias), 3 BN, 4 ReLU, 5 conv (bias)."""
    if kind == "r-l-r-l":
        cells = [nn.BatchNorm2d(cin), nn.ReLU(), _conv1x1(cin, hidden, False),
                 nn.BatchNorm2d(hidden), nn.ReLU(), _conv1x1(hidden, cout, True)]
    elif kind == "l-r-l":
        cells = [_conv1x1(cin, hidden, False), nn.BatchNorm2d(hidden), nn.ReLU(), _conv1x1(hidden, cout, True)]
    elif kind == "r-l":
        cells = [nn.BatchNorm2d(cin), nn.ReLU(), _conv1x1(cin, cout, True)]
    else:
        cells = [_conv1x1(cin, cout, True)]
    return nn.SequentialCell(cells)


def _unwrap(cell):
    """The cell itself, or the one an AMP cast wrapper holds: O2 keeps each BatchNorm in float32 inside a
    wrapper cell (``_backbone``) that has none of the BatchNorm's parameters."""
    return getattr(cell, "_backbone", cell)


class _Aggregation(nn.Cell):
    """The weighted footprint sum for ``groups`` share groups: (N, groups*n_w, H, W) x (N, n_w, k*k, L)."""

    def __init__(self, gather: LocalWindowGather) -> None:
        super().__init__()
        self.gather = gather

    def construct(self, x3, w, groups):
        n = x3.shape[0]
        v = self.gather(x3)                                       # (N, C, k*k, Ho, Wo)
        ho, wo = v.shape[3], v.shape[4]
        v = v.reshape(n, groups, w.shape[1], v.shape[2], ho * wo)
        y = ops.sum(v * ops.expand_dims(w, 1), 3)                 # (N, groups, n_w, L)
        return y.reshape(n, groups * w.shape[1], ho, wo)


class SAMBase(nn.Cell):
    """What pairwise and patchwise SAM share: the projections phi, psi, beta (``conv1``, ``conv2``, ``conv3``), the
    reflection-padded gathers, the aggregation ``y_c(i) = sum_j w_{c mod n_w}(i, j) * beta_c(x_j)`` (gather or
    fused kernel) and the argument checks. A subclass builds gamma (``conv_w``) and computes the attention
    weights in :meth:`weights`; build one with :func:`SAM` or directly as :class:`PairwiseSAM` /
    :class:`PatchwiseSAM` (the same arguments without ``sa_type``).

    Args:
        in_planes: input channels C.
        rel_planes: channels of phi and psi (official: C/16 in the SAN bottleneck).
        out_planes: channels of beta and of the output (official: C/4).
        share_planes: feature channels sharing one attention-weight channel (official: 8).
        kernel_size: footprint side k (odd).
        stride, dilation: of the footprint (SAN uses 1, 1).
        relation: see the module docstring; ``None`` = the official relation of the attention type.
        mapping: gamma's layout, see the module docstring.
        position_encoding: pairwise only, append p_i - p_j (official: on). Patchwise weights index the
            footprint positions themselves, so the flag has no effect there.
        export_safe: build the gathers with the ONNX-exportable slice path (same numbers, slower).
        agg_chunks: split the aggregation into this many chunks of share groups (a divisor of share_planes).
            Gathering all k*k neighbours of beta(x) for every channel is a B x out_planes x k*k x H*W tensor,
            4x the official relation tensor (the official CUDA kernel never builds it). With ``agg_chunks``
            chunks, each gathered under :func:`mindspore.recompute` while training, the largest such tensor
            is B x out_planes/agg_chunks x k*k x H*W. ``None`` = ``share_planes`` (one chunk per share
            group: n_w x k*k, smaller than the relation tensor); ``1`` = one gather, fastest, most memory.
            Only training chunks; inference (``set_train(False)``) always gathers once. Used by the
            ``'unfold'`` aggregation only.
        attn_impl: aggregation formulation. ``'auto'`` (default): the build target's form
            (:mod:`convattn.layers.targets`): ``'fused'`` on CPU where the fused kernels
            (:mod:`convattn.cpu.window`) are available, else ``'unfold'``. ``'fused'``: one ``ops.Custom``
            kernel sums ``w_t * shift_t(pad(beta(x)))`` over the taps, forward and backward, never building the
            ``k*k x C x H x W`` tensor (CPU only, stride 1; the gather runs at stride > 1 and when export-safe).
            ``'unfold'``: the gather + broadcast multiply + sum (every backend; ONNX with ``export_safe``).
            All equal to float32 rounding, forward and gradients (tests).
    """
    sa_type = ""
    relations: tuple = ()

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 3, stride: int = 1, dilation: int = 1, relation=None, mapping: str = "r-l-r-l",
                 position_encoding: bool = True, export_safe=None, agg_chunks=None,
                 attn_impl: str = "auto") -> None:
        super().__init__()
        owner = type(self).__name__
        if attn_impl not in ("auto", "fused", "unfold"):
            raise ValueError(f"{owner}: attn_impl must be 'auto', 'fused' (CPU kernel) or 'unfold' (gather), "
                             f"got {attn_impl!r}")
        self.attn_impl = select_form("sam_aggregation", attn_impl, owner)
        for label, v in (("in_planes", in_planes), ("rel_planes", rel_planes), ("out_planes", out_planes),
                         ("share_planes", share_planes), ("stride", stride), ("dilation", dilation)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{owner}: {label} must be a positive integer, got {v!r}")
        if out_planes % share_planes:
            raise ValueError(
                f"{owner}: out_planes={out_planes} is not divisible by share_planes={share_planes}; every weight "
                f"channel is shared by exactly share_planes feature channels, so choose share_planes among the "
                f"divisors of {out_planes} (official: 8 with out_planes = C/4)")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{owner}: kernel_size (footprint) must be a positive odd integer so the footprint has "
                             f"a centre pixel, got {kernel_size!r} (official: 3 in stage 0, 7 elsewhere)")
        valid = self.relations
        relation = valid[0] if relation is None else relation
        if relation not in valid:
            raise ValueError(f"{owner}: unknown {self.sa_type} relation {relation!r}; choose one of {list(valid)} "
                             f"(official: {valid[0]!r})")
        if mapping not in MAPPINGS:
            raise ValueError(f"{owner}: unknown mapping {mapping!r}; choose one of {list(MAPPINGS)} "
                             f"(official: 'r-l-r-l')")
        agg_chunks = share_planes if agg_chunks is None else agg_chunks
        if not isinstance(agg_chunks, int) or agg_chunks < 1 or share_planes % agg_chunks:
            raise ValueError(f"{owner}: agg_chunks must divide share_planes={share_planes}, got {agg_chunks!r}")
        self.agg_chunks = agg_chunks
        self.relation = relation
        self.mapping = mapping
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.share_planes = share_planes
        self.num_weights = out_planes // share_planes
        self.out_planes = out_planes
        self.position_encoding = False  # a pairwise option
        self.export_safe = current_form().export_safe if export_safe is None else bool(export_safe)
        self.pad = dilation * (kernel_size - 1) // 2

        self.conv1 = _conv1x1(in_planes, rel_planes, True)
        self.conv2 = _conv1x1(in_planes, rel_planes, True)
        self.conv3 = _conv1x1(in_planes, out_planes, True)

    def _build_aggregation(self) -> None:
        """The gathers and the aggregation cells (after the subclass's gamma, the order the official module
        creates its cells in)."""
        self.gather = self._gather()
        self.aggregation = _Aggregation(self.gather)
        # the CPU backend's fused kernels (stride 1, not export-safe), chosen once
        self.fused = self.stride == 1 and self.attn_impl == "fused" and not self.export_safe
        if self.fused:
            self.fused_aggregation = cpu_cell("local_aggregate", "interleaved", self.kernel_size, self.dilation,
                                              self.num_weights)
        self.gather_rel = self._gather()

    def _gather(self) -> LocalWindowGather:
        return LocalWindowGather(self.kernel_size, self.stride, self.dilation, self.pad, "reflect", self.export_safe)

    def extend_repr(self):
        return (f"sa_type={self.sa_type}, relation={self.relation}, mapping={self.mapping}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, share_planes={self.share_planes}, "
                f"position_encoding={self.position_encoding}, attn_impl={self.attn_impl}")

    def idle_gathers(self):
        """The gather cells the current formulation does not run (for the speed harness's formulation column)."""
        if not self.fused:
            return []
        return [self.gather]

    def _centre(self, x):
        """x at the footprint centres, (N, C, Ho*Wo): the centre tap is never padded."""
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return x.reshape(x.shape[0], x.shape[1], 1, -1)

    def weights(self, x1, x2):
        """The attention weights ``(N, n_w, k*k, Ho*Wo)`` from phi(x) and psi(x)."""
        raise NotImplementedError

    def aggregate(self, x3, w):
        """y_c(i) = sum_j w_{c mod n_w}(i, j) * x3_c(j), reflection padding; w is (N, n_w, k*k, Ho*Wo).

        The fused kernel (stride 1) needs no gather. Otherwise:

        Channel c = s * n_w + (c mod n_w): x3 splits into (share, n_w) so w broadcasts over the share axis.
        While training with ``agg_chunks`` > 1 the share groups are gathered chunk by chunk under recompute,
        so the gathered values never exist for all channels at once (see the class docstring). Inference
        keeps no tape, so it gathers once (fewer ops, faster graph compilation).
        """
        n, c, h, wd = x3.shape
        if self.fused:
            return self.fused_aggregation(w.reshape(n, self.num_weights, w.shape[2], h, wd), self.gather.reflect(x3))
        if self.agg_chunks == 1 or not self.training:
            return self.aggregation(x3, w, self.share_planes)
        per = self.share_planes // self.agg_chunks
        g = x3.reshape(n, self.share_planes, self.num_weights, h, wd)
        ys = tuple(self._aggregation_chunk(g[:, i * per:(i + 1) * per].reshape(n, per * self.num_weights, h, wd), w, per)
                   for i in range(self.agg_chunks))
        y = ops.concat(ys, 1)
        return y.reshape(n, self.out_planes, y.shape[2], y.shape[3])

    def _aggregation_chunk(self, x3, w, groups):
        return recompute(self.aggregation, x3, w, groups)

    def extra_macs(self, inputs, output) -> int:
        """Multiply-adds no Conv2d hook sees: the aggregation ``sum_j w(i, j) beta(x_j)`` (out_planes x k*k per
        output pixel) and the product relations (Hadamard / dot / star: rel x k*k, clique: rel x k^4 per pixel).
        gamma's 1x1 convolutions are counted by their hooks (or by the fused kernel's own declaration)."""
        n, ho, wo = output.shape[0], output.shape[-2], output.shape[-1]
        kk = self.kernel_size * self.kernel_size
        macs = n * self.out_planes * kk * ho * wo
        rel = self.conv1.out_channels
        if self.relation in ("hadamard", "dot", "star"):
            macs += n * rel * kk * ho * wo
        elif self.relation == "clique":
            macs += n * rel * kk * kk * ho * wo
        return macs

    def attend(self, x):
        """``(y, phi(x), psi(x), beta(x))``: the SAM output and the three projections (ACmix-SAN reuses them)."""
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        return self.aggregate(x3, self.weights(x1, x2)), x1, x2, x3

    def construct(self, x):
        return self.attend(x)[0]


class PairwiseSAM(SAMBase):
    """Pairwise SAM: ``w(i, j) = softmax_j gamma([delta(x_i, x_j), p_i - p_j])`` (see :class:`SAMBase` for the
    arguments). On CPU the official relation and gamma run as fused kernels: the subtraction relation (and
    p_i - p_j) in one pass, at inference gamma too (BatchNorms folded), and the softmax over the taps."""
    sa_type = "pairwise"
    relations = PAIRWISE_RELATIONS

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 3, stride: int = 1, dilation: int = 1, relation=None, mapping: str = "r-l-r-l",
                 position_encoding: bool = True, export_safe=None, agg_chunks=None,
                 attn_impl: str = "auto") -> None:
        super().__init__(in_planes, rel_planes, out_planes, share_planes, kernel_size, stride, dilation, relation,
                         mapping, position_encoding, export_safe, agg_chunks, attn_impl)
        self.position_encoding = bool(position_encoding)
        rel_dim = {"concatenation": 2 * rel_planes, "dot": 1}.get(self.relation, rel_planes)
        rel_dim += 2 if self.position_encoding else 0
        self.conv_w = _mapping(mapping, rel_dim, rel_planes, self.num_weights)
        if self.position_encoding:
            self.conv_p = _conv1x1(2, 2, True)
        self.softmax = nn.Softmax(axis=2)
        self.relation_channels = rel_dim
        self._build_aggregation()
        if self.fused:
            self.fused_softmax = cpu_cell("tap_softmax")
            if self.relation == "subtraction":
                self.fused_diff = cpu_cell("local_diff", kernel_size, dilation)
                if mapping == "r-l-r-l":
                    self.fused_mlp = cpu_cell("pairwise_mlp", kernel_size, dilation)
        if self.position_encoding:
            self.gather_pos = self._gather()

    def idle_gathers(self):
        idle = super().idle_gathers()
        if idle and self.relation == "subtraction":
            idle.append(self.gather_rel)  # only its padding cell runs
            if self.position_encoding:
                idle.append(self.gather_pos)
        return idle

    def _position_map(self, x):
        """conv_p of the [-1, 1] coordinate grid of x's map: (1, 2, H, W), (x, y) channel order."""
        h, w = x.shape[2], x.shape[3]
        grid = coordinate_grid(h, w, x.dtype)  # arange-built, bit-identical to linspace(-1, 1) (tests/test_export.py)
        return self.conv_p(grid)

    def _position(self, x):
        """p_i - p_j for the map size of x: (1, 2, k*k, Ho*Wo)."""
        p = self._position_map(x)
        nb = self.gather_pos(p)
        return self._centre(p) - nb.reshape(1, 2, nb.shape[2], -1)

    def _subtraction_inputs(self, x1, x2):
        """The two small maps whose windowed difference is [phi(x_i) - psi(x_j), p_i - p_j]: (a, padded b)."""
        n, _, h, w = x1.shape
        a, b = x1, x2
        if self.position_encoding:
            p = ops.broadcast_to(self._position_map(x1), (n, 2, h, w))
            a, b = ops.concat((x1, p), 1), ops.concat((x2, p), 1)
        return a, self.gather_rel.reflect(b)

    def _fused_subtraction(self, x1, x2):
        """The relation in one kernel pass over the concatenated maps: (N, rel(+2), k*k, L)."""
        a, bp = self._subtraction_inputs(x1, x2)
        r = self.fused_diff(a, bp)
        return r.reshape(r.shape[0], r.shape[1], r.shape[2], -1)

    def _fused_subtraction_mapping_eval(self, x1, x2):
        """Inference with the official gamma (BN-ReLU-1x1-BN-ReLU-1x1) in one kernel pass (:class:`PairwiseMlp`):
        the relation tensor and gamma's hidden maps never exist. Both BatchNorms are folded on the fly: BN0 is
        affine per channel and the relation a difference, so ``BN0(a_i - b_j) = (s*a + t)_i - (s*b)_j`` applies to
        the small maps; BN1 folds into the first 1x1 conv. Exact algebra (float32 rounding); training keeps the
        plain cells (batch statistics)."""
        bn0, conv1, bn1, conv2 = _unwrap(self.conv_w[0]), self.conv_w[2], _unwrap(self.conv_w[3]), self.conv_w[5]
        a, bp = self._subtraction_inputs(x1, x2)
        s0 = bn0.gamma / ops.sqrt(bn0.moving_variance + bn0.eps)
        t0 = bn0.beta - bn0.moving_mean * s0
        s0, t0 = s0.reshape(1, -1, 1, 1), t0.reshape(1, -1, 1, 1)
        s1 = bn1.gamma / ops.sqrt(bn1.moving_variance + bn1.eps)
        w1 = conv1.weight.reshape(conv1.weight.shape[0], -1) * s1.reshape(-1, 1)
        w2 = conv2.weight.reshape(conv2.weight.shape[0], -1)
        w = self.fused_mlp(a * s0 + t0, bp * s0, w1, bn1.beta - bn1.moving_mean * s1, w2, conv2.bias)
        return w.reshape(w.shape[0], w.shape[1], w.shape[2], -1)

    def weights(self, x1, x2):
        n = x1.shape[0]
        fused = self.fused
        if fused and self.relation == "subtraction" and self.mapping == "r-l-r-l" and not self.training:
            w = self._fused_subtraction_mapping_eval(x1, x2)
        else:
            r = self._fused_subtraction(x1, x2) if fused and self.relation == "subtraction" else \
                self._relation(x1, x2)
            w = self.conv_w(r)                                    # (N, n_w, k*k, L)
        if fused:
            w = self.fused_softmax(w.reshape(n, w.shape[1], w.shape[2], x1.shape[2], x1.shape[3]))
            return w.reshape(n, w.shape[1], w.shape[2], -1)
        return self.softmax(w)

    def _relation(self, x1, x2):
        n = x1.shape[0]
        nb = self.gather_rel(x2)
        nb = nb.reshape(n, nb.shape[1], nb.shape[2], -1)        # psi(x_j): (N, rel, k*k, L)
        c = self._centre(x1)                                      # phi(x_i): (N, rel, 1, L)
        if self.relation == "subtraction":
            r = c - nb
        elif self.relation == "summation":
            r = c + nb
        elif self.relation == "hadamard":
            r = c * nb
        elif self.relation == "dot":
            r = ops.sum(c * nb, 1, keepdim=True)
        else:
            r = ops.concat((ops.broadcast_to(c, nb.shape), nb), 1)
        if self.position_encoding:
            p = self._position(x1)
            r = ops.concat((r, ops.broadcast_to(p, (n, p.shape[1], p.shape[2], p.shape[3]))), 1)
        return r


class PatchwiseSAM(SAMBase):
    """Patchwise SAM: ``w(i, .) = gamma(delta(x_R(i)))``, no softmax (see :class:`SAMBase` for the arguments;
    ``position_encoding`` has no effect: the weights index the footprint positions themselves)."""
    sa_type = "patchwise"
    relations = PATCHWISE_RELATIONS

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 3, stride: int = 1, dilation: int = 1, relation=None, mapping: str = "r-l-r-l",
                 position_encoding: bool = True, export_safe=None, agg_chunks=None,
                 attn_impl: str = "auto") -> None:
        super().__init__(in_planes, rel_planes, out_planes, share_planes, kernel_size, stride, dilation, relation,
                         mapping, position_encoding, export_safe, agg_chunks, attn_impl)
        kk = kernel_size * kernel_size
        rel_dim = {"concatenation": rel_planes * (kk + 1), "star": kk, "clique": kk * kk}[self.relation]
        self.conv_w = _mapping(mapping, rel_dim, self.num_weights, kk * self.num_weights)
        self.relation_channels = rel_dim
        self._build_aggregation()

    def idle_gathers(self):
        return [] if self.relation == "clique" else super().idle_gathers()  # clique gathers phi with it

    def weights(self, x1, x2):
        n = x1.shape[0]
        kk = self.kernel_size * self.kernel_size
        nb = self.gather_rel(x2)
        nb = nb.reshape(n, nb.shape[1], kk, -1)                   # psi(x_j): (N, rel, k*k, L)
        c = self._centre(x1)                                      # phi(x_i): (N, rel, 1, L)
        if self.relation == "concatenation":
            # official layout: channel rel_c * k*k + tap after phi's rel channels
            r = ops.concat((c, nb.reshape(n, -1, 1, nb.shape[3])), 1)
        elif self.relation == "star":
            r = ops.sum(c * nb, 1, keepdim=True).reshape(n, kk, 1, -1)
        else:  # clique: phi(x_k)^T psi(x_j) for every pair of footprint positions (k, j)
            phi = self.gather(x1)
            phi = phi.reshape(n, phi.shape[1], kk, -1)
            a = ops.transpose(phi, (0, 3, 2, 1))                  # (N, L, k*k [k], rel)
            b = ops.transpose(nb, (0, 3, 1, 2))                   # (N, L, rel, k*k [j])
            r = ops.transpose(ops.matmul(a, b), (0, 2, 3, 1))      # (N, k*k, k*k, L)
            r = r.reshape(n, kk * kk, 1, -1)
        w = self.conv_w(r)                                        # (N, n_w * k*k, 1, L)
        return w.reshape(n, self.num_weights, kk, -1)


SAM_TYPES = {"pairwise": PairwiseSAM, "patchwise": PatchwiseSAM}


class SAM:
    """SAN's self-attention module of attention type ``sa_type`` (``'pairwise'`` / ``'patchwise'``, or the official
    ``0`` / ``1``): ``SAM(sa_type, in_planes, rel_planes, out_planes, ...)`` builds a :class:`PairwiseSAM` or a
    :class:`PatchwiseSAM` with the remaining arguments (see :class:`SAMBase`); parameter names are the official
    ones either way. A class (not a function) so that model code can keep it as a class attribute
    (``sam_cls = SAM``) without Python binding it as a method; it never makes instances of its own."""

    def __new__(cls, sa_type, *args, **kwargs) -> SAMBase:
        return SAM_TYPES[sa_type_name(sa_type)](*args, **kwargs)
