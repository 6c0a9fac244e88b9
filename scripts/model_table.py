#!/usr/bin/env python
"""Print (or write into configs/README.md) the model table. See --help.

Thin wrapper over ``convattn.bench.model_table_cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.model_table_cli import main

if __name__ == "__main__":
    sys.exit(main())
