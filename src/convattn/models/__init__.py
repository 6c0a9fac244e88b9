"""Networks, one file per family, all registered in :mod:`convattn.models.registry`."""
from .registry import create_model, get_model_cfg, is_model, list_models, model_cfg, register_model
from . import van  # noqa: F401  (registers the VAN family)
from . import resnet  # noqa: F401  (ResNet baselines and ACmix-ResNet)
from . import swin  # noqa: F401  (Swin baselines and ACmix-Swin)

__all__ = ["create_model", "get_model_cfg", "is_model", "list_models", "model_cfg", "register_model"]
from . import deit  # noqa: F401,E402  (registers DeiT and its dynamic-convolution attention variants)
from . import swin_dynconv  # noqa: F401,E402  (Swin with ReLU / depth-wise window attention)
