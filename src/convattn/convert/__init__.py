"""Official PyTorch checkpoints -> MindSpore, without PyTorch.

* :mod:`.pth_reader` reads ``torch.save`` files (zip and legacy formats) safely, with no PyTorch.
* :mod:`.rules` holds each family's weight-name rules; :mod:`.mapping` applies them (pure data mapping).
* :mod:`.converter` loads the result into a network or writes a ``.ckpt`` (``python -m convattn.convert``).
"""
from .mapping import ConversionError, map_key, map_state_dict
from .rules import RULES, ConversionRules, get_rules

__all__ = ["ConversionError", "map_key", "map_state_dict", "RULES", "ConversionRules", "get_rules",
           "load_official_state", "map_official_state", "read_official_state", "convert_checkpoint",
           "CONVERTER_VERSION"]


def __getattr__(name):  # lazy: keep `import convattn.convert.rules` free of MindSpore
    if name in ("load_official_state", "map_official_state", "read_official_state", "convert_checkpoint",
                "CONVERTER_VERSION"):
        from . import converter

        return getattr(converter, name)
    raise AttributeError(name)
