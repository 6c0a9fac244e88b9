"""Networks, one file per family, all registered in :mod:`convattn.models.registry`."""
from .registry import create_model, get_model_cfg, is_model, list_models, model_cfg, register_model
from . import van  # noqa: F401  (registers the VAN family)

__all__ = ["create_model", "get_model_cfg", "is_model", "list_models", "model_cfg", "register_model"]
from . import san  # noqa: F401,E402  (registers the SAN family)
