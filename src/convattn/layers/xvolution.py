"""X-volution: convolution + self-attention trained as two branches, deployed as one dynamic convolution.

Refer to "X-volution: On the Unification of Convolution and Self-attention" (Chen, Wang, Ni; arXiv 2106.02253).
No code was ever published; this is a design from the paper's description. Every choice the paper leaves
open is named below and in the README's fidelity table.

Training form (``XVolution``, Fig. 1 of the paper): two branches, summed::

    y = BN_c(Conv_kxk(x)) + BN_a(PSSA(x))

* conv branch: a k x k convolution (stride s, zero padding k // 2, no bias) followed by BatchNorm.
* attention branch, ``attn='pssa'`` (pixel-shift self-attention, the paper's X-volution): shift the map by L
  pixels along each direction d (a *cyclic* shift "implemented by indexing",
  ``S_d(x)[h, w] = x[(h + L*dy) mod H, (w + L*dx) mod W]``, slices + concat, never Roll), multiply it element-wise
  with the original map, ``T_d = x * S_d(x)``, and take a weighted sum of the transformed maps (a convolution).
  Two readings of that weighted sum, ``pssa_form``:

  ``'attention'`` (default; the paper's operator cost): the weighted sum is taken over the channels of each
  product, one 1 x 1 grouped convolution (D groups, C -> 1, stride s) giving one attention coefficient per
  direction and output pixel, ``a_d(x0) = C^-1/2 sum_c w[d, c] x_c(x0) x_c(x0 + L d)`` (a dot-product
  self-attention logit between x0 and its shifted neighbour with the usual 1/sqrt(C) scale, no softmax, no
  positional encoding); the branch output is the
  attention-weighted sum of the neighbours, ``PSSA(x)(x0) = sum_d a_d(x0) V S_d(x)(x0)``, with V the identity
  when C_out == C (every ResNet 3x3 except a BasicBlock's first conv of a stage) and a 1 x 1 value
  projection otherwise. The operator's cost is the k x k conv plus ~3 D C multiply-adds per output pixel.

  ``'dense'`` (the first version, kept selectable): the weighted sum is one dense k x k convolution over the
  D*C product channels ``concat(T_1 .. T_D)`` (direction-major, same k/stride/padding as the conv branch, no
  bias), i.e. D extra k x k convolutions: (1 + D) x the parameters and MACs of the plain conv.

  Then BatchNorm (the paper's normalisation; no softmax).

  Bounding, ``pssa_norm`` (issue #29): the products are degree 2 in the map and the ``'attention'`` form applies
  them to a third copy, so with nothing else the branch is cubic in its input. A stage of X-volutions then
  multiplies the growth (a fresh ResNet-34 in eval mode, where BN is still the identity: NaN at 224^2; float16
  overflows long before). ``'rms'`` (default) takes the products of channel-RMS-normalised operands,
  ``u = x / sqrt(mean_c x^2 + eps)`` per pixel (computed in float32), wherever a product forms the content-dependent
  part of the kernel: ``a_d(x0) = C^-1/2 sum_c w[d, c] u_c(x0) S_d(u)_c(x0)`` (a cosine-similarity attention
  logit, ``|a_d| <= C^1/2 max|w[d]|``) and, in the ``'dense'`` form, ``T_d = x * S_d(u)``. The dynamic weights are
  then bounded and scale-free, as softmax attention weights are, and the operator stays linear in the taps it
  weights (degree 1 in x, like the convolution beside it) -- the paper's ``y(x0) = sum_i (W_c + w_A(x0, x_i)) x_i``
  with a bounded ``w_A``. For unit-RMS features (what a trained BN delivers) it is the unnormalised operator.
  ``'none'`` is the unbounded first version (kept for comparison). ``attn_bn_gamma`` sets the initial scale of the
  attention branch's BN (1, the paper's plain BN; 0 starts the network as the plain ResNet, which bounds only the
  fresh network: the products stay unbounded, see configs/xvolution/README.md).
* attention branch, ``attn='sa'`` (the paper's X-volution (SA)): global multi-head dot-product self-attention
  without positional encoding, 1 x 1 query/key/value projections (no bias), logits scaled by
  ``1/sqrt(head_dim)``, softmax over all key positions, then BatchNorm. With stride s the queries are the
  pixels ``x[:, :, ::s, ::s]`` (the conv branch's output grid); keys and values cover the whole map.

Deploy form (:meth:`XVolution.switch_to_deploy`): every BatchNorm is folded into the weights next to it, and

* PSSA: both branches merge into ONE dynamic convolution whose kernel at output position x0 and tap u is the
  static kernel plus content-dependent attention coefficients (the paper's
  ``y(x0) = sum_i (W_c(x0, x_i) + w_A(x0, x_i)) x_i + b``).
  ``'attention'``: ``K(x0)[o, c, u] = W_c[o, c, u] + M[o, c] * a_{d(u)}(x0)`` with M = diag(BN scale) or the
  scaled value projection; evaluated as the folded k x k conv plus the online coefficients applied to the
  shifted taps (never materialising K). The cyclic shift means a border pixel's neighbour tap wraps around
  instead of reading the zero padding; inside the map K acts on the k x k window exactly.
  ``'dense'``: ``K(x0)[o, c, u] = W_c[o, c, u] + sum_d W_a[o, d*C + c, u] * S_d(u)_c(x0 + u)`` (``S_d(x)`` with
  ``pssa_norm='none'``), evaluated as one k x k convolution over ``concat(x, T_1, .., T_D)`` with the fused weight
  ``concat(W_c, W_a)`` and one bias. The normalisation is part of the online coefficients, not of the folded
  weights, so both forms compute it identically.
  :meth:`XVolution.dynamic_kernel` returns K explicitly for either form (for inspection and the tests, which
  check that ``sum_u K[u] x(x0 + u)`` equals the deploy output). This is exact, not an approximation.
* SA: the BN after attention folds exactly into the value projection (softmax rows sum to one), and the conv
  branch's BN into the conv; but global attention has a window of the whole image and cannot become a k x k
  kernel, so the deploy form keeps it as a second branch (``y = Conv'(x) + SA'(x)``) -- stated, not approximated.

Cost: ``python scripts/benchmark.py --models 'xvolution_resnet34@deploy' resnet34`` measures it; the README
quotes the measurements of both PSSA forms against the plain ResNets.

Supported for re-parameterization: odd k (1, 3, 5, 7, ...), any stride >= 1, dilation 1, groups 1. Anything else
is refused at construction with the reason. A deploy-form operator refuses training mode and a second switch.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from .helpers import subsample2d

__all__ = ["XVolution", "PSSA_FORMS", "PSSA_NORMS", "pssa_directions", "shift2d", "unit_rms"]

PSSA_FORMS = ("attention", "dense")
PSSA_NORMS = ("rms", "none")

_DIRECTION_SETS = {
    # (dy, dx): S_d(x)[h, w] = x[h + L*dy, w + L*dx] (cyclic). "left" = the map moves left = sample from the right.
    4: ((0, 1), (0, -1), (1, 0), (-1, 0)),
    8: ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)),
}


def pssa_directions(directions: Union[int, Sequence[Tuple[int, int]]], shift: Union[int, Sequence[int]]):
    """The list of pixel offsets (dy*L, dx*L) that PSSA multiplies with the original map.

    ``directions``: 4 (left, right, up, down), 8 (also the four diagonals), or explicit unit steps ``((dy, dx), ..)``.
    ``shift``: the distance L, or several distances (each direction is used at every distance).
    """
    if isinstance(directions, (int, np.integer)) and not isinstance(directions, bool):
        if int(directions) not in _DIRECTION_SETS:
            raise ValueError(f"directions must be 4, 8 or a sequence of (dy, dx) steps, got {directions}")
        steps = _DIRECTION_SETS[int(directions)]
    else:
        try:
            steps = tuple((int(d[0]), int(d[1])) for d in directions)
            bad = any(len(d) != 2 for d in directions)
        except (TypeError, IndexError, ValueError):
            raise ValueError(f"directions must be 4, 8 or a sequence of (dy, dx) steps, got {directions!r}") from None
        if bad or not steps or any(d == (0, 0) for d in steps) or len(set(steps)) != len(steps):
            raise ValueError(f"directions must be distinct non-zero (dy, dx) steps, got {directions!r}")
    dists = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    if not dists or any(int(L) < 1 for L in dists) or len(set(dists)) != len(dists):
        raise ValueError(f"shift (the distance L in pixels) must be a positive int or distinct positive ints, got {shift!r}")
    return [(dy * int(L), dx * int(L)) for L in dists for (dy, dx) in steps]


def _cyclic(x, s: int, axis: int):
    """``out[..., i, ...] = x[..., (i + s) mod n, ...]`` along ``axis`` (2 or 3), from slices + concat."""
    n = x.shape[axis]
    s = s % n
    if s == 0:
        return x
    if axis == 2:
        return ops.concat((x[:, :, s:], x[:, :, :s]), 2)
    return ops.concat((x[:, :, :, s:], x[:, :, :, :s]), 3)


def shift2d(x, dy: int, dx: int):
    """Cyclic shift ``S(x)[h, w] = x[(h + dy) mod H, (w + dx) mod W]`` (export-safe: no Roll)."""
    return _cyclic(_cyclic(x, dy, 2), dx, 3)


def unit_rms(x, eps: float = 1e-6):
    """``x / sqrt(mean_c x^2 + eps)`` at every pixel of an (N, C, H, W) map: each pixel's channel vector scaled to
    unit RMS (``|u|^2 <= C``), in float32 whatever ``x``'s dtype (a float16 square overflows past |x| = 256), returned
    in ``x``'s dtype. Sqrt and Div, not Rsqrt: the ONNX exporter has both."""
    xf = x.astype(ms.float32)
    u = xf / ops.sqrt((xf * xf).mean(1, keep_dims=True) + eps)
    return u.astype(x.dtype)


def _fold_bn(bn: nn.BatchNorm2d) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm: bn(z) = scale * z + shift."""
    gamma = bn.gamma.asnumpy().astype(np.float64)
    beta = bn.beta.asnumpy().astype(np.float64)
    mean = bn.moving_mean.asnumpy().astype(np.float64)
    var = bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - scale * mean


def _param(value: np.ndarray, name: str) -> Parameter:
    return Parameter(Tensor(value.astype(np.float32)), name=name, requires_grad=False)


class DirectionLogits(nn.Cell):
    """``a_d = sum_c w[d, c] f[d*C + c]`` at every pixel of the stride-``s`` grid: (N, D*C, H, W) -> (N, D, Ho, Wo).

    The same function as a 1x1 convolution with D groups (weight (D, C, 1, 1), no bias), written as a multiply and
    a channel sum: Ascend runs a grouped Conv2D only when it is depth-wise, and this one is not (D*C -> D), so the
    grouped convolution would not run there. One formulation serves every target.
    """

    def __init__(self, channels: int, directions: int, stride: int = 1) -> None:
        super().__init__()
        self.channels, self.directions, self.stride = channels, directions, stride
        self.weight = Parameter(Tensor(np.zeros((directions, channels, 1, 1), np.float32)), name="weight")

    def construct(self, feats):
        feats = subsample2d(feats, self.stride)
        n, _, h, w = feats.shape
        f = ops.reshape(feats, (n, self.directions, self.channels, h, w))
        wt = ops.reshape(self.weight, (1, self.directions, self.channels, 1, 1)).astype(f.dtype)
        return (f * wt).sum(2)

    def extra_macs(self, inputs, output) -> int:
        return int(np.prod(output.shape)) * self.channels


class XVolution(nn.Cell):
    """X-volution operator: k x k conv + BN, plus PSSA + BN or global self-attention + BN (see the module doc).

    Args:
        in_channels, out_channels: C and C_out.
        kernel_size: k of the conv branch (and of PSSA's local weighted sum); odd. The paper's ablation finds 7
            best on COCO; 3 is the drop-in for a ResNet 3x3 and the default here.
        stride: output stride of both branches.
        attn: ``'pssa'`` (X-volution) or ``'sa'`` (X-volution (SA), global self-attention).
        directions: PSSA shift directions: 4 (default; left, right, up, down -- the directions the paper names),
            8 (plus diagonals: the full 3x3 Markov neighbourhood), or explicit ``((dy, dx), ...)``.
        shift: PSSA shift distance L in pixels (default 1), or a tuple of distances.
        pssa_form: ``'attention'`` (default: one attention coefficient per direction from the channel-weighted
            product, applied to the shifted neighbours; the plain conv's cost plus ~3DC MACs per pixel) or
            ``'dense'`` (a dense k x k conv over the D*C product channels: (1 + D) x the conv's cost). See the
            module doc.
        num_heads: heads of the SA branch (default ``max(1, out_channels // 64)``: 64-dim heads).
        padding, dilation, groups: accepted only to refuse unsupported values with a clear message
            (padding must be k // 2, dilation 1, groups 1 for the re-parameterization to be exact).
        pssa_norm: ``'rms'`` (default: the products that form the content-dependent kernel take channel-RMS-
            normalised operands, so the dynamic weights are bounded and the operator is linear in its input) or
            ``'none'`` (the unbounded products; cubic in the input, see the module doc).
        attn_bn_gamma: initial scale (gamma) of the attention branch's BatchNorm; 1 (default) or 0 (the branch
            starts silent and the network starts as the plain ResNet).
        bn_eps, bn_momentum: BatchNorm settings (PyTorch defaults 1e-5 / 0.1 -> MindSpore momentum 0.9).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 attn: str = "pssa", directions: Union[int, Sequence[Tuple[int, int]]] = 4,
                 shift: Union[int, Sequence[int]] = 1, num_heads: Optional[int] = None,
                 padding: Optional[int] = None, dilation: int = 1, groups: int = 1,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.9, pssa_form: str = "attention",
                 pssa_norm: str = "rms", attn_bn_gamma: float = 1.0) -> None:
        super().__init__()
        if isinstance(kernel_size, (tuple, list)):
            if len(kernel_size) != 2 or kernel_size[0] != kernel_size[1]:
                raise ValueError(f"XVolution supports square kernels only, got kernel_size={kernel_size}")
            kernel_size = kernel_size[0]
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"XVolution needs an odd kernel_size (1, 3, 5, 7, ...) so that the conv and attention windows share "
                f"one centred k x k window in the merged dynamic convolution, got {kernel_size}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if dilation != 1:
            raise ValueError(f"XVolution re-parameterization supports dilation=1 only, got dilation={dilation}")
        if groups != 1:
            raise ValueError(f"XVolution re-parameterization supports groups=1 only, got groups={groups}")
        if padding is not None and padding != kernel_size // 2:
            raise ValueError(f"XVolution uses 'same' zero padding k // 2 = {kernel_size // 2}, got padding={padding}")
        if attn not in ("pssa", "sa"):
            raise ValueError(f"attn must be 'pssa' (pixel-shift self-attention) or 'sa' (global self-attention), got '{attn}'")
        if pssa_form not in PSSA_FORMS:
            raise ValueError(f"pssa_form must be one of {PSSA_FORMS} ('attention': the paper's per-direction "
                             f"attention coefficients; 'dense': a k x k conv over the products), got '{pssa_form}'")
        if pssa_norm not in PSSA_NORMS:
            raise ValueError(f"pssa_norm must be one of {PSSA_NORMS} ('rms': products of channel-RMS-normalised "
                             f"operands, bounded; 'none': the unbounded products), got '{pssa_norm}'")
        attn_bn_gamma = float(attn_bn_gamma)
        if not np.isfinite(attn_bn_gamma):
            raise ValueError(f"attn_bn_gamma must be a finite number (1: plain BN, 0: silent branch), got {attn_bn_gamma}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.attn = attn
        self.pssa_form = pssa_form if attn == "pssa" else None
        self.pssa_norm = pssa_norm if attn == "pssa" else None
        self.norm_eps = 1e-6
        self.deployed = False
        k, p = kernel_size, kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, k, stride, pad_mode="pad", padding=p, has_bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        if attn == "pssa":
            self.offsets = pssa_directions(directions, shift)
            self.num_shifts = d = len(self.offsets)
            if pssa_form == "dense":
                self.attn_conv = nn.Conv2d(in_channels * d, out_channels, k, stride, pad_mode="pad", padding=p,
                                           has_bias=False)
            else:
                # a_d(x0) = C^-1/2 sum_c w[d, c] x_c(x0) S_d(x)_c(x0): D groups of C products -> D coefficients
                self.attn_logit = DirectionLogits(in_channels, d, stride)
                self.logit_scale = float(in_channels) ** -0.5       # dot-product attention's 1/sqrt(C)
                self.value = (None if in_channels == out_channels
                              else nn.Conv2d(in_channels, out_channels, 1, has_bias=False))
        else:
            self.offsets = []
            self.num_shifts = 0
            heads = max(1, out_channels // 64) if num_heads is None else int(num_heads)
            if heads < 1 or out_channels % heads:
                raise ValueError(f"num_heads={num_heads} must be >= 1 and divide out_channels={out_channels}")
            self.num_heads = heads
            self.head_dim = out_channels // heads
            self.scale = self.head_dim ** -0.5
            # stride-s 1x1 conv == 1x1 conv on x[:, :, ::s, ::s] (a strided slice has no working CPU gradient)
            self.query = nn.Conv2d(in_channels, out_channels, 1, stride=stride, has_bias=False)
            self.key = nn.Conv2d(in_channels, out_channels, 1, has_bias=False)
            self.value = nn.Conv2d(in_channels, out_channels, 1, has_bias=False)
        self.attn_bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.attn_bn_gamma = attn_bn_gamma
        if attn_bn_gamma != 1.0:
            self.attn_bn.gamma.set_data(Tensor(np.full((out_channels,), attn_bn_gamma, np.float32)))
        self.init_attention()

    def init_attention(self) -> None:
        """Initialise the 'attention' form's coefficient weights N(0, 0.02) (a transformer's projection init), so
        the branch starts small beside the conv; a network whose own init re-draws every Conv2d (the ResNet's
        Kaiming fan-out would give these D-output convs a std of sqrt(2)) calls this again afterwards."""
        if self.attn == "pssa" and self.pssa_form == "attention" and not self.deployed:
            w = self.attn_logit.weight
            w.set_data(Tensor(np.random.normal(0.0, 0.02, w.shape).astype(np.float32)))

    def extend_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"attn={self.attn}, deployed={self.deployed}")
        if self.attn == "pssa":
            s += f", pssa_form={self.pssa_form}, pssa_norm={self.pssa_norm}, offsets={self.offsets}"
        else:
            s += f", num_heads={self.num_heads}"
        return s

    # ----------------------------------------------------------------------------------------- branches
    def pssa_operand(self, x):
        """The map whose products form the dynamic weights: ``unit_rms(x)`` (``pssa_norm='rms'``) or ``x``."""
        return unit_rms(x, self.norm_eps) if self.pssa_norm == "rms" else x

    def pssa_features(self, x):
        """The transformed maps, (N, D*C, H, W), direction-major: ``concat(u * S_d(u))`` for the ``'attention'``
        form's coefficients, ``concat(x * S_d(u))`` for the ``'dense'`` form (``u`` = :meth:`pssa_operand`)."""
        u = self.pssa_operand(x)
        left = u if self.pssa_form == "attention" else x
        return ops.concat(tuple(left * shift2d(u, o[0], o[1]) for o in self.offsets), 1)

    def pssa_coefficients(self, x):
        """``a_d(x0) = C^-1/2 sum_c w[d, c] u_c(x0) S_d(u)_c(x0)`` on the conv grid: (N, D, Ho, Wo)."""
        return self.attn_logit(self.pssa_features(x)) * self.logit_scale

    def pssa_attention(self, x):
        """The ``'attention'`` form's branch before its BN: ``sum_d a_d(x0) V S_d(x)(x0)`` on the conv grid."""
        a = self.pssa_coefficients(x)                                # (N, D, Ho, Wo)
        v = x if self.value is None else self.value(x)
        out = None
        for i, o in enumerate(self.offsets):
            sd = subsample2d(shift2d(v, o[0], o[1]), self.stride)   # the conv grid's pixels x[::s, ::s]
            term = a[:, i:i + 1] * sd
            out = term if out is None else out + term
        return out

    def extra_macs(self, inputs, output) -> int:
        """Multiply-adds outside the Conv2d cells: the PSSA products and the attention-weighted sum, or the SA
        query-key and attention-value products."""
        x = inputs[0]
        n, c, h, w = x.shape
        ho, wo = output.shape[2], output.shape[3]
        if self.attn == "sa":
            hw = h * w
            return 2 * n * self.out_channels * ho * wo * hw          # q k^T and a v, every head
        macs = n * self.num_shifts * c * h * w                        # x * S_d(x)
        if self.pssa_norm == "rms":
            macs += 2 * n * c * h * w                                 # sum_c x^2, x / rms
        if self.pssa_form == "attention":
            macs += n * self.num_shifts * self.out_channels * ho * wo # sum_d a_d * S_d(V x)
        return macs

    def global_attention(self, x):
        """Multi-head softmax attention; queries on the stride-s grid, keys/values everywhere: (N, C_out, Ho, Wo)."""
        n = x.shape[0]
        q = self.query(x)
        ho, wo = q.shape[2], q.shape[3]
        h, d = self.num_heads, self.head_dim
        q = ops.reshape(q, (n, h, d, ho * wo))
        k = ops.reshape(self.key(x), (n, h, d, -1))
        v = ops.reshape(self.value(x), (n, h, d, -1))
        logits = ops.matmul(ops.transpose(q, (0, 1, 3, 2)), k) * self.scale   # (n, h, HWq, HWk)
        a = ops.softmax(logits, -1)
        out = ops.matmul(v, ops.transpose(a, (0, 1, 3, 2)))                    # (n, h, d, HWq)
        return ops.reshape(out, (n, h * d, ho, wo))

    def construct(self, x):
        if self.deployed:
            if self.training:
                raise RuntimeError(
                    "XVolution is in deploy form (BatchNorms folded, weights frozen) and cannot be trained; "
                    "train the training-form network and call switch_to_deploy() after training")
            if self.attn == "pssa":
                if self.pssa_form == "dense":
                    return self.fused(ops.concat((x, self.pssa_features(x)), 1))
                att = self.pssa_attention(x)
                return self.fused(x) + (att if self.attn_scale is None else att * self.attn_scale)
            return self.fused(x) + self.global_attention(x)
        y = self.bn(self.conv(x))
        if self.attn == "pssa":
            if self.pssa_form == "dense":
                return y + self.attn_bn(self.attn_conv(self.pssa_features(x)))
            return y + self.attn_bn(self.pssa_attention(x))
        return y + self.attn_bn(self.global_attention(x))

    def set_train(self, mode: bool = True):
        if mode and getattr(self, "deployed", False):
            raise RuntimeError(
                "XVolution is in deploy form and cannot be put in training mode; train the training-form network "
                "and call switch_to_deploy() after training")
        return super().set_train(mode)

    # --------------------------------------------------------------------------------- re-parameterization
    def switch_to_deploy(self) -> None:
        """Fold every BN and merge the branches (PSSA: one dynamic conv; SA: conv + SA, see the module doc).

        Uses the BN running statistics, i.e. the eval-mode network. Irreversible; a second call raises.
        Networks are switched by ``create_model(..., deploy=True)`` (:func:`convattn.layers.reparam.switch_to_deploy`)
        right after they are built, before anything compiled them.
        """
        if self.deployed:
            raise RuntimeError("XVolution.switch_to_deploy() was already called: this operator is in deploy form")
        old = self.conv.weight.name           # "<path>.conv.weight": keep full parameter paths after the swap
        prefix = old[:-len("conv.weight")] if old.endswith("conv.weight") else ""
        sc, bc = _fold_bn(self.bn)
        sa, ba = _fold_bn(self.attn_bn)
        wc = self.conv.weight.asnumpy().astype(np.float64) * sc[:, None, None, None]
        k, p = self.kernel_size, self.padding
        if self.attn == "pssa" and self.pssa_form == "attention":
            fused = nn.Conv2d(self.in_channels, self.out_channels, k, self.stride, pad_mode="pad", padding=p,
                              has_bias=True)
            fused.weight = _param(wc, "weight")
            fused.bias = _param(bc + ba, "bias")
            # BN_a(sum_d a_d V S_d x) = diag(sa) sum_d a_d V S_d x + ba: the scale goes into V (or stays a vector)
            if self.value is not None:
                value = nn.Conv2d(self.in_channels, self.out_channels, 1, has_bias=False)
                value.weight = _param(self.value.weight.asnumpy().astype(np.float64) * sa[:, None, None, None],
                                      "weight")
                self.value = value
                value.weight.name = prefix + "value.weight"
                self.attn_scale = None
            else:
                self.attn_scale = _param(sa.reshape(1, -1, 1, 1), prefix + "attn_scale")
            self.attn_logit.weight.requires_grad = False
        elif self.attn == "pssa":
            wa = self.attn_conv.weight.asnumpy().astype(np.float64) * sa[:, None, None, None]
            cin = self.in_channels * (1 + self.num_shifts)
            fused = nn.Conv2d(cin, self.out_channels, k, self.stride, pad_mode="pad", padding=p, has_bias=True)
            fused.weight = _param(np.concatenate((wc, wa), 1), "weight")
            fused.bias = _param(bc + ba, "bias")
            del self.attn_conv
        else:
            fused = nn.Conv2d(self.in_channels, self.out_channels, k, self.stride, pad_mode="pad", padding=p,
                              has_bias=True)
            fused.weight = _param(wc, "weight")
            fused.bias = _param(bc, "bias")
            # BN(A V) = s * (A V) + b = A (s V) + b because every softmax row sums to one: fold into `value`.
            wv = self.value.weight.asnumpy().astype(np.float64) * sa[:, None, None, None]
            value = nn.Conv2d(self.in_channels, self.out_channels, 1, has_bias=True)
            value.weight = _param(wv, "weight")
            value.bias = _param(ba, "bias")
            self.value = value
            value.weight.name, value.bias.name = prefix + "value.weight", prefix + "value.bias"
            for cell in (self.query, self.key):
                for prm in cell.get_parameters():
                    prm.requires_grad = False
        del self.conv, self.bn, self.attn_bn
        self.fused = fused
        fused.weight.name, fused.bias.name = prefix + "fused.weight", prefix + "fused.bias"
        self.deployed = True
        super().set_train(False)

    def dynamic_kernel(self, x) -> Tensor:
        """The deploy-form PSSA operator's per-position kernel ``K(x0)``: (N, C_out, C, k, k, Ho, Wo).

        ``y[n, o, x0] = sum_{c,u} K[n, o, c, u, x0] * x_pad[n, c, x0*s + u] + b[o]`` (x zero-padded by k // 2).
        ``'attention'`` form: every shift offset must lie inside the k x k window, and the identity holds where
        no tap wraps around the border (the cyclic shift reads the opposite border there, not the padding).
        For inspection and tests (it materialises N*C_out*C*k*k*Ho*Wo numbers); the operator itself never builds it.
        """
        if not (self.deployed and self.attn == "pssa"):
            raise RuntimeError("dynamic_kernel() exists for a deploy-form PSSA XVolution; call switch_to_deploy() first")
        xs = x.asnumpy().astype(np.float64)
        n, c, hh, ww = xs.shape
        k, p, s = self.kernel_size, self.padding, self.stride
        w = self.fused.weight.asnumpy().astype(np.float64)            # (O, C or (1+D)C, k, k)
        o = w.shape[0]
        ho, wo = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
        wc = w[:, :c]
        kern = np.broadcast_to(wc[None, :, :, :, :, None, None], (n, o, c, k, k, ho, wo)).copy()
        if self.pssa_form == "attention":
            outside = [off for off in self.offsets if max(abs(off[0]), abs(off[1])) > p]
            if outside:
                raise ValueError(f"shift offsets {outside} lie outside the {k}x{k} window: the 'attention' form "
                                 f"is a {k}x{k} dynamic kernel only for offsets within +-{p}")
            a = self.pssa_coefficients(x).asnumpy().astype(np.float64)                   # (N, D, Ho, Wo)
            if self.value is not None:
                m = self.value.weight.asnumpy().astype(np.float64)[:, :, 0, 0]         # (O, C)
            else:
                m = np.diag(self.attn_scale.asnumpy().astype(np.float64).reshape(-1))
            for d, (dy, dx) in enumerate(self.offsets):
                kern[:, :, :, p + dy, p + dx] += m[None, :, :, None, None] * a[:, d][:, None, None]
            return Tensor(kern.astype(np.float32))
        wa = w[:, c:].reshape(o, self.num_shifts, c, k, k)
        us = xs / np.sqrt((xs * xs).mean(1, keepdims=True) + self.norm_eps) if self.pssa_norm == "rms" else xs
        for d, (dy, dx) in enumerate(self.offsets):
            sd = np.roll(us, (-dy, -dx), axis=(2, 3))                   # S_d(u)[h, w] = u[h + dy, w + dx]
            sdp = np.pad(sd, ((0, 0), (0, 0), (p, p), (p, p)))
            for i in range(k):
                for j in range(k):
                    win = sdp[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]   # (n, c, ho, wo)
                    kern[:, :, :, i, j] += np.einsum("oc,nchw->nochw", wa[:, d, :, i, j], win)
        return Tensor(kern.astype(np.float32))
