"""Batch-level mixup / cutmix and label smoothing on the host, in NumPy (timm semantics).

Targets are always soft ``(B, C)`` float32 rows, so one soft-target cross-entropy serves plain
training, label smoothing and mixup/cutmix. The random draws come from a ``numpy.random.RandomState``
the caller seeds per (epoch, step), so a resumed run replays exactly the same mixing.
"""
import numpy as np

__all__ = ["smooth_one_hot", "Mixup"]


def smooth_one_hot(labels, num_classes: int, smoothing: float = 0.0, mode: str = "standard") -> np.ndarray:
    """Label-smoothed one-hot targets.

    ``standard``: ``(1 - eps) * onehot + eps / C`` (the true class gets ``1 - eps + eps/C``; timm,
    PyTorch ``label_smoothing``). ``wrong_classes``: the true class gets ``1 - eps`` and each of the
    ``C - 1`` wrong classes ``eps / (C - 1)`` (the SAN / ACmix upstream ``smooth_loss``).
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    if mode == "standard":
        off, on = smoothing / num_classes, 1.0 - smoothing + smoothing / num_classes
    elif mode == "wrong_classes":
        if num_classes < 2:
            raise ValueError("wrong_classes smoothing needs at least 2 classes")
        off, on = smoothing / (num_classes - 1), 1.0 - smoothing
    else:
        raise ValueError(f"label smoothing mode must be 'standard' or 'wrong_classes', got {mode!r}")
    out = np.full((labels.size, num_classes), off, dtype=np.float32)
    out[np.arange(labels.size), labels] = on
    return out


class Mixup:
    """Mixup (``mixup_alpha``) and/or CutMix (``cutmix_alpha``) of a whole batch with its flipped copy.

    With both on, each batch uses CutMix with probability ``switch_prob``; a batch is mixed at all with
    probability ``prob``. CutMix's lambda is corrected to the pasted box's true area.
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, num_classes: int = 1000, smoothing: float = 0.0,
                 smoothing_mode: str = "standard") -> None:
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.num_classes, self.smoothing, self.smoothing_mode = num_classes, smoothing, smoothing_mode

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.RandomState):
        targets = smooth_one_hot(labels, self.num_classes, self.smoothing, self.smoothing_mode)
        if not self.active or rng.rand() >= self.prob:
            return images, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.rand() < self.switch_prob)
        images = images.copy()
        if use_cutmix:
            lam = rng.beta(self.cutmix_alpha, self.cutmix_alpha)
            h, w = images.shape[-2:]
            cut = np.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = rng.randint(h), rng.randint(w)
            y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
            x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
            images[..., y0:y1, x0:x1] = images[::-1][..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            lam = rng.beta(self.mixup_alpha, self.mixup_alpha)
            images = (images * lam + images[::-1] * (1.0 - lam)).astype(images.dtype)
        targets = (targets * lam + targets[::-1] * (1.0 - lam)).astype(np.float32)
        return images, targets
