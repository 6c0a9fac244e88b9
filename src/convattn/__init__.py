"""convattn: a MindSpore model zoo for networks that fuse convolution and self-attention.

``import convattn`` applies the CPU speed default (``ONEDNN_MAX_CPU_ISA=AVX2`` unless set) before
MindSpore executes anything; see :mod:`convattn._env`.
"""
from ._env import apply_cpu_defaults

apply_cpu_defaults()

from .models import create_model, list_models, register_model, get_model_cfg, is_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "get_model_cfg", "is_model", "__version__"]
