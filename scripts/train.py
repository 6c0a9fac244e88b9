#!/usr/bin/env python
"""Train a model from a YAML recipe + --key value overrides (console command: convattn-train). See --help.

Thin wrapper over ``convattn.engine.cli.train_main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.engine.cli import train_main as main

if __name__ == "__main__":
    sys.exit(main())
