"""convattn: a MindSpore model zoo for networks that fuse convolution and self-attention.

Importing the package changes nothing outside it. :func:`apply_cpu_defaults` sets MindSpore's oneDNN speed
default where it helps (see :mod:`convattn._env`); the command-line tools and ``create_model`` for the CPU target
apply it.
"""
from ._env import apply_cpu_defaults
from .models import create_model, list_models, register_model, get_model_cfg, is_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "get_model_cfg", "is_model", "apply_cpu_defaults",
           "__version__"]
