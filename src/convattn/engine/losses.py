"""Losses: soft-target cross-entropy (serves plain, label-smoothed and mixup/cutmix targets) and a
hard-label cross-entropy with both label-smoothing forms."""
import mindspore as ms
from mindspore import nn, ops

__all__ = ["SoftTargetCrossEntropy", "LabelSmoothingCrossEntropy"]


class SoftTargetCrossEntropy(nn.Cell):
    """``mean_b( -sum_c target[b, c] * log_softmax(logits)[b, c] )``, computed in float32."""

    def construct(self, logits, target):
        logp = ops.log_softmax(ops.cast(logits, ms.float32), -1)
        return ops.mean(ops.sum(-target * logp, -1))


class LabelSmoothingCrossEntropy(nn.Cell):
    """Cross-entropy on integer labels with label smoothing ``smoothing``.

    ``mode='standard'`` spreads epsilon over all C classes (true class ``1 - eps + eps/C``);
    ``mode='wrong_classes'`` spreads it over the C-1 wrong classes (true class ``1 - eps``), the form of
    the SAN and ACmix upstream training code.
    """

    def __init__(self, num_classes: int, smoothing: float = 0.0, mode: str = "standard") -> None:
        super().__init__()
        if mode not in ("standard", "wrong_classes"):
            raise ValueError(f"mode must be 'standard' or 'wrong_classes', got {mode!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if mode == "standard":
            self.off = smoothing / num_classes
            self.on = 1.0 - smoothing + self.off
        else:
            self.off = smoothing / (num_classes - 1)
            self.on = 1.0 - smoothing
        self.num_classes = num_classes

    def construct(self, logits, labels):
        logp = ops.log_softmax(ops.cast(logits, ms.float32), -1)
        onehot = ops.one_hot(ops.cast(labels, ms.int32), self.num_classes,
                             ms.Tensor(self.on, ms.float32), ms.Tensor(self.off, ms.float32))
        return ops.mean(ops.sum(-onehot * logp, -1))
