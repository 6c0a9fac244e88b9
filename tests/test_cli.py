"""Command lines: one flag spelling (``--snake_case`` in ``--help``, ``--kebab-case`` accepted as an alias), console
entry points, and scripts/*.py as thin wrappers that do not patch ``sys.path``.

Parses a command line that sets every flag of each parser once in each spelling (no command runs) and compares
the results; cheap (no MindSpore work).
"""
import argparse
import ast
import importlib

import pytest

from conftest import REPO

from convattn.utils.cli import ALIAS_NOTE, ArgumentParser

# every command line's parser: (module, function building it)
PARSERS = [
    ("convattn.bench.cli", "build_parser"),
    ("convattn.bench.pipeline_cli", "bench_parser"),
    ("convattn.bench.pipeline_cli", "generate_parser"),
    ("convattn.convert.__main__", "build_parser"),
    ("convattn.deploy.cli", "build_parser"),
    ("convattn.deploy.infer_cli", "build_parser"),
    ("convattn.engine.cli", "prepare_digits_parser"),
    ("convattn.engine.compare_attention", "build_parser"),
    ("convattn.bench.model_table_cli", "build_parser"),
    ("convattn.bench.target_table", "build_parser"),
    ("convattn.bench.export_table", "build_parser"),
    ("convattn.convert.parity_cli", "build_parser"),
    ("convattn.data.val_layout_cli", "build_parser"),
]


def _value(action):
    """One valid command-line value for ``action``."""
    if action.choices:
        return str(list(action.choices)[0])
    if action.type in (int, float):
        return "1"
    if action.type is not None:  # a custom converter (e.g. --target): the first candidate it accepts
        for text in ("CPU", "1", "x"):
            try:
                action.type(text)
                return text
            except (argparse.ArgumentTypeError, ValueError, TypeError):
                pass
    return "x"


def _argv(parser, spell):
    argv = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        n = action.nargs
        count = 0 if n == 0 else (n if isinstance(n, int) else 1)
        values = [_value(action)] * count
        if not action.option_strings:
            argv = values + argv  # positionals first
            continue
        flag = max(action.option_strings, key=len)
        argv += [spell(flag)] + values
    return argv


def _kebab(flag):
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


@pytest.mark.parametrize("module,builder", PARSERS, ids=[f"{m}:{b}" for m, b in PARSERS])
def test_every_flag_takes_both_spellings_and_help_shows_snake_case(module, builder):
    parser = getattr(importlib.import_module(module), builder)()
    assert isinstance(parser, ArgumentParser), f"{module}.{builder} must use convattn.utils.cli.ArgumentParser"
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert flags, module
    assert not [f for f in flags if "-" in f[2:]], f"{module}: flags must be registered --snake_case"
    help_text = parser.format_help()
    for flag in flags:
        assert flag in help_text
        assert _kebab(flag) == flag or _kebab(flag) not in help_text  # the alias is not advertised
    assert ALIAS_NOTE in " ".join(help_text.split())
    snake = parser.parse_args(_argv(parser, lambda f: f))
    kebab = parser.parse_args(_argv(parser, _kebab))
    assert vars(kebab) == vars(snake)
    kebab_eq = []  # --flag-name=value works too
    for token in _argv(parser, _kebab):
        if kebab_eq and kebab_eq[-1].startswith("--") and "=" not in kebab_eq[-1] and not token.startswith("--"):
            action = parser._option_string_actions[parser._canonical_token(kebab_eq[-1])]
            if action.nargs is None:
                kebab_eq[-1] += "=" + token
                continue
        kebab_eq.append(token)
    assert vars(parser.parse_args(kebab_eq)) == vars(snake)


def test_alias_rewriting_leaves_values_and_the_double_dash_alone():
    p = ArgumentParser(prog="t")
    p.add_argument("--model-kwargs")
    p.add_argument("rest", nargs="*")
    args = p.parse_args(["--model-kwargs=--a-b", "--", "--batch-size"])
    assert args.model_kwargs == "--a-b" and args.rest == ["--batch-size"]
    assert p.parse_args(["--model-kw", "a-b"]).model_kwargs == "a-b"  # an abbreviation, as argparse allows
    with pytest.raises(SystemExit):
        p.parse_args(["--no-such-flag", "1"])


def test_engine_overrides_take_both_spellings():
    """train / eval / the launchers' config check: every config key as --snake_case or --kebab-case."""
    from convattn.engine.config import SCHEMA, parse_cli

    keys = [k for k in SCHEMA if "_" in k]
    values = {k: ("{depths: [1, 1]}" if k == "model_kwargs" else "1") for k in keys}
    snake = parse_cli([t for k in keys for t in (f"--{k}", values[k])], "t")
    kebab = parse_cli([t for k in keys for t in (f"--{k.replace('_', '-')}", values[k])], "t")
    assert snake == kebab and snake["model_kwargs"] == {"depths": [1, 1]}


def test_engine_model_kwargs_uses_the_shared_syntax_and_error():
    from convattn.engine.config import ConfigError, parse_cli

    assert parse_cli(["--model_kwargs", '{"depths": [1, 1]}'], "t")["model_kwargs"] == {"depths": [1, 1]}
    with pytest.raises(ConfigError, match="--model_kwargs must be a mapping written in YAML flow style"):
        parse_cli(["--model-kwargs", "[1, 2]"], "t")


def test_engine_help_lists_snake_case(capsys):
    from convattn.engine.config import parse_cli

    with pytest.raises(SystemExit):
        parse_cli(["--help"], "t")
    out = capsys.readouterr().out
    assert "model_kwargs" in out and "amp_level" in out and "model-kwargs" not in out


def test_scripts_do_not_touch_sys_path():
    """scripts/*.py and export/export.py import the installed (or PYTHONPATH) package; none edits sys.path."""
    bad = []
    for path in sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "export").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, "scripts must not patch sys.path (the package is installed, or PYTHONPATH=src): " + ", ".join(bad)


def _console_scripts():
    tomllib = pytest.importorskip("tomllib")
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_console_entry_points_are_importable():
    scripts = _console_scripts()
    for name in ("convattn-train", "convattn-eval", "convattn-export", "convattn-bench", "convattn-convert"):
        assert name in scripts, f"pyproject.toml lacks the console command {name}"
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func, None)), f"{name} -> {target} is not callable"
