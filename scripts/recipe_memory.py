#!/usr/bin/env python
"""Projected device memory of every Ascend recipe: print the table, --measure slopes, --write it into
configs/README.md, --check it. See --help.

Thin wrapper over ``convattn.bench.recipe_memory_cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.recipe_memory_cli import main

if __name__ == "__main__":
    sys.exit(main())
