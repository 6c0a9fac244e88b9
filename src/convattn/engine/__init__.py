"""Training and evaluation engine: config, losses, optimizers, schedules, EMA, checkpoints, loops."""
from .checkpoint import CheckpointManager, atomic_save_checkpoint, find_latest
from .config import Config, ConfigError, load_config, parse_cli, validate
from .losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from .optim import create_optimizer, no_decay, param_groups
from .scheduler import build_lr_schedule, cosine_lr

__all__ = ["CheckpointManager", "atomic_save_checkpoint", "find_latest", "Config", "ConfigError", "load_config",
           "parse_cli", "validate", "LabelSmoothingCrossEntropy", "SoftTargetCrossEntropy", "create_optimizer",
           "no_decay", "param_groups", "build_lr_schedule", "cosine_lr"]
