"""Argument helpers shared by the command lines (converter, exporter)."""
import json

__all__ = ["parse_model_kwargs"]


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
