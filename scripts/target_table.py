#!/usr/bin/env python
"""Print (or write into docs/ascend.md) the target table; --check loads checkpoints across forms. See --help.

Thin wrapper over ``convattn.bench.target_table.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.target_table import main

if __name__ == "__main__":
    sys.exit(main())
