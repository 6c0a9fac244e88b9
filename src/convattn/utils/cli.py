"""Argument helpers shared by the command lines (converter, exporter)."""
import json
from typing import Optional, Tuple

__all__ = ["parse_model_kwargs", "split_num_classes"]


def parse_model_kwargs(text: str) -> dict:
    """``--model-kwargs`` as a dict: a JSON object such as ``'{"depths": [1, 1, 1, 1]}'``, else a clear ValueError."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--model-kwargs must be a JSON object such as '{{\"depths\": [1, 1, 1, 1]}}', "
                         f"got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--model-kwargs must be a JSON object such as '{{\"depths\": [1, 1, 1, 1]}}', "
                         f"got {text!r} (not a JSON object)")
    return value


def split_num_classes(model_kwargs: dict, num_classes: Optional[int]) -> Tuple[dict, Optional[int]]:
    """Let ``num_classes`` come from ``--num-classes`` or from ``--model-kwargs`` (any ``create_model`` argument
    may be given there): returns (the kwargs without it, the class count). Two different counts, or the model
    name in the kwargs, are a ValueError that says which flag to use."""
    kwargs = dict(model_kwargs)
    if "name" in kwargs:
        raise ValueError("--model-kwargs sets 'name', which is the model name: pass it as --model NAME instead")
    if "num_classes" in kwargs:
        given = kwargs.pop("num_classes")
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(f"--model-kwargs: num_classes must be a positive integer, got {given!r}")
        if num_classes is not None and num_classes != given:
            raise ValueError(f"--num-classes {num_classes} and --model-kwargs num_classes {given} disagree; "
                             "give the class count once, with --num-classes")
        num_classes = given
    return kwargs, num_classes
