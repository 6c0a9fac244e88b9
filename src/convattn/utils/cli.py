"""Argument helpers shared by every command line (train, eval, export, convert, infer, bench, the table scripts).

One flag spelling: long options are written ``--snake_case`` (model_zoo's spelling, the same as the config keys and
recipes, e.g. ``--amp_level O2``); the ``--kebab-case`` spelling of every flag is accepted as an alias and rewritten
before parsing, so ``--help`` and the error messages show the canonical one. One ``model_kwargs`` syntax: a YAML flow
mapping (``'{depths: [1, 1, 1, 1]}'``; JSON is valid YAML, so ``'{"depths": [1, 1, 1, 1]}'`` works too). One way to
read a value through a normalising function (:func:`argument_type`): every ``--target`` / ``--device_target`` flag
takes any case and is normalised by ``convattn.layers.targets.resolve_target``, as the config keys are.
"""
import argparse
import os
import sys
from typing import Any, Callable, Optional, Tuple

import yaml

from .errors import UsageError

__all__ = ["ArgumentParser", "canonical_flag", "argument_type", "parse_model_kwargs", "split_num_classes",
           "ALIAS_NOTE"]

ALIAS_NOTE = "Flags are written --snake_case; the --kebab-case spelling of each is accepted too."


def canonical_flag(option: str) -> str:
    """``'--batch-sizes'`` -> ``'--batch_sizes'``; short options (``-c``) are returned unchanged."""
    if option.startswith("--") and len(option) > 2:
        return "--" + option[2:].replace("-", "_")
    return option


def _prog() -> str:
    """The command as the user typed it: ``convattn-bench``, ``benchmark.py`` or ``python -m convattn.convert``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "convattn"
    if name == "__main__.py":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return "python -m " + spec.name.removesuffix(".__main__")
    return name


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the project's flag spelling.

    ``add_argument("--image-size")`` registers ``--image_size`` (same ``dest``); on the command line either
    spelling (also ``--image-size=64``) reaches it. Everything after a bare ``--`` is left alone.
    """

    def __init__(self, *args, **kwargs):
        if not args and kwargs.get("prog") is None:
            kwargs["prog"] = _prog()
        epilog = kwargs.get("epilog")
        kwargs["epilog"] = f"{epilog}\n\n{ALIAS_NOTE}" if epilog else ALIAS_NOTE
        super().__init__(*args, **kwargs)
        if self.add_help:  # read by convattn.utils.errors.command, the one error path of every tool
            super().add_argument("--debug", action="store_true",
                                 help="on a failure, print the full traceback (default: one error line)")

    def add_argument(self, *names, **kwargs):
        return super().add_argument(*(canonical_flag(n) for n in names), **kwargs)

    def _canonical_token(self, token: str) -> str:
        if not token.startswith("--") or len(token) <= 2 or "-" not in token[2:].split("=", 1)[0]:
            return token
        flag, eq, value = token.partition("=")
        snake = canonical_flag(flag)
        known = self._option_string_actions
        if snake in known or (self.allow_abbrev and any(o.startswith(snake) for o in known)):
            return snake + eq + value
        return token

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            args = sys.argv[1:]
        args = list(args)
        out = []
        for i, token in enumerate(args):
            if token == "--":
                out += args[i:]
                break
            out.append(self._canonical_token(token))
        return super().parse_known_args(out, namespace)


def argument_type(convert: Callable[[str], Any], name: Optional[str] = None) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a value through ``convert`` (a function raising ValueError on a bad value,
    e.g. ``resolve_target``: ``--target ascend`` -> ``'Ascend'``); the ValueError's message becomes argparse's
    error for the flag."""
    def parse(value: str):
        try:
            return convert(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name or getattr(convert, "__name__", "value")
    return parse


def parse_model_kwargs(text: Optional[str], flag: str = "--model_kwargs") -> dict:
    """``model_kwargs`` text as a dict, the one syntax of every command line and config override: a YAML flow
    mapping such as ``'{depths: [1, 1, 1, 1]}'`` (a JSON object is valid YAML). Empty text is ``{}``. Anything
    else is a ValueError that names the flag and shows an example."""
    example = "'{depths: [1, 1, 1, 1], num_classes: 10}'"
    if text is None or not str(text).strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = (f"{exc.problem} at column {mark.column + 1}" if getattr(exc, "problem", None) and mark
                  else " ".join(str(exc).split()))
        raise UsageError(f"{flag} must be a mapping written in YAML flow style or as a JSON object, e.g. {example}; "
                         f"got {text!r}, which does not parse ({reason})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a mapping written in YAML flow style or as a JSON object, e.g. {example}; "
                         f"got {text!r} ({type(value).__name__}, not a mapping)")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise UsageError(f"{flag}: argument names must be strings, got {bad!r} in {text!r}")
    return value


def split_num_classes(model_kwargs: dict, num_classes: Optional[int]) -> Tuple[dict, Optional[int]]:
    """Let ``num_classes`` come from ``--num_classes`` or from ``--model_kwargs`` (any ``create_model`` argument
    may be given there): returns (the kwargs without it, the class count). Two different counts, or the model
    name in the kwargs, are a ValueError that says which flag to use."""
    kwargs = dict(model_kwargs)
    if "name" in kwargs:
        raise UsageError("--model_kwargs sets 'name', which is the model name: pass it as --model NAME instead")
    if "num_classes" in kwargs:
        given = kwargs.pop("num_classes")
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise UsageError(f"--model_kwargs: num_classes must be a positive integer, got {given!r}")
        if num_classes is not None and num_classes != given:
            raise UsageError(f"--num_classes {num_classes} and --model_kwargs num_classes {given} disagree; "
                             "give the class count once, with --num_classes")
        num_classes = given
    return kwargs, num_classes
