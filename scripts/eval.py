#!/usr/bin/env python
"""Evaluate a checkpoint on the val tree (console command: convattn-eval). See --help.

Thin wrapper over ``convattn.engine.cli.eval_main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.engine.cli import eval_main as main

if __name__ == "__main__":
    sys.exit(main())
