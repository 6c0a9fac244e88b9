"""Networks, one file per family (blocks, network, variant table), registered through :mod:`.builder`."""
from .base import set_recompute
from .builder import create_model
from .registry import get_model_cfg, is_model, list_models, model_cfg, register_model, small_instance_kwargs
from . import van  # noqa: F401  (VAN B0-B6)
from . import resnet  # noqa: F401  (ResNet baselines and ACmix-ResNet)
from . import swin  # noqa: F401  (Swin baselines and ACmix-Swin)
from . import swin_dynconv  # noqa: F401  (Swin with ReLU / depth-wise window attention)
from . import pvt  # noqa: F401  (PVT v1 baselines and ACmix-PVT)
from . import xvolution  # noqa: F401  (X-volution ResNets)
from . import deit  # noqa: F401  (DeiT and its dynamic-convolution attention variants)
from . import san  # noqa: F401  (SAN pairwise / patchwise)
from . import acmix_san  # noqa: F401  (ACmix-SAN, designed from the paper)

__all__ = ["create_model", "get_model_cfg", "is_model", "list_models", "model_cfg", "register_model",
           "small_instance_kwargs", "set_recompute"]
