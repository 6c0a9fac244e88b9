"""Train/eval transforms from a model's default config (mean, std, crop_pct, interpolation).

Train: RandomResizedCrop -> horizontal flip -> RandAugment or colour jitter -> normalise -> CHW ->
random erasing. Eval: resize the short side to ``image_size / crop_pct`` -> centre crop -> normalise -> CHW.
Mixup/cutmix act on whole batches (see :mod:`convattn.data.mixup`).
"""
import math
from typing import Optional, Sequence

__all__ = ["resolve_data_cfg", "train_transforms", "eval_transforms", "parse_randaugment"]


def _inter(name: str):
    from mindspore.dataset.vision import Inter
    return {"bilinear": Inter.BILINEAR, "bicubic": Inter.BICUBIC, "nearest": Inter.NEAREST,
            "area": Inter.AREA}[name]


def resolve_data_cfg(cfg, model_cfg: dict) -> dict:
    """Fill the config's null image_size/crop_pct/interpolation/mean/std from the model's default config."""
    return {
        "image_size": int(cfg["image_size"] or model_cfg["input_size"][-1]),
        "crop_pct": float(cfg["crop_pct"] or model_cfg["crop_pct"]),
        "interpolation": cfg["interpolation"] or model_cfg["interpolation"],
        "mean": tuple(float(x) for x in (cfg["mean"] or model_cfg["mean"])),
        "std": tuple(float(x) for x in (cfg["std"] or model_cfg["std"])),
    }


def parse_randaugment(spec: str):
    """``'rand-m9-n2-mstd0.5-inc1'`` -> (magnitude, num_ops). Only m and n are used; mstd/inc are accepted."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"config key 'auto_augment' must look like 'rand-m9-n2', got {spec!r}")
    magnitude, num_ops = 9, 2
    for part in parts[1:]:
        try:
            if part.startswith("mstd"):
                float(part[4:])
            elif part.startswith("inc"):
                int(part[3:])
            elif part.startswith("m"):
                magnitude = int(part[1:])
            elif part.startswith("n"):
                num_ops = int(part[1:])
            else:
                raise ValueError(part)
        except ValueError:
            raise ValueError(f"config key 'auto_augment': cannot read {part!r} in {spec!r} "
                              "(expected rand-m<int>[-n<int>][-mstd<float>][-inc<int>])") from None
    if not 0 <= magnitude <= 30 or num_ops < 1:
        raise ValueError(f"config key 'auto_augment': magnitude must be 0..30 and n >= 1, got {spec!r}")
    return magnitude, num_ops


def train_transforms(image_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic",
                     scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5, color_jitter: float = 0.0,
                     auto_augment: Optional[str] = None, re_prob: float = 0.0) -> list:
    from mindspore.dataset import vision
    ops = [vision.RandomResizedCrop(image_size, scale=tuple(scale), ratio=tuple(ratio),
                                    interpolation=_inter(interpolation))]
    if hflip > 0:
        ops.append(vision.RandomHorizontalFlip(prob=hflip))
    if auto_augment:
        magnitude, num_ops = parse_randaugment(auto_augment)
        fill = tuple(int(round(255 * m)) for m in mean)
        ops.append(vision.RandAugment(num_ops=num_ops, magnitude=min(magnitude, 30), num_magnitude_bins=31,
                                      interpolation=_inter("bilinear"), fill_value=fill))
    elif color_jitter > 0:
        ops.append(vision.RandomColorAdjust(brightness=color_jitter, contrast=color_jitter,
                                            saturation=color_jitter))
    ops += [vision.Normalize(mean=[255 * m for m in mean], std=[255 * s for s in std]), vision.HWC2CHW()]
    if re_prob > 0:
        # per-pixel normal noise in the erased box, as timm's 'pixel' mode (value='random')
        ops.append(vision.RandomErasing(prob=re_prob, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), value="random"))
    return ops


def eval_transforms(image_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic",
                    crop_pct: float = 0.875) -> list:
    from mindspore.dataset import vision
    resize = int(math.floor(image_size / crop_pct))
    return [vision.Resize(resize, interpolation=_inter(interpolation)), vision.CenterCrop(image_size),
            vision.Normalize(mean=[255 * m for m in mean], std=[255 * s for s in std]), vision.HWC2CHW()]
