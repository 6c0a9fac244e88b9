#!/usr/bin/env python
"""Inference speed harness (console command: convattn-bench). See --help.

Thin wrapper over ``convattn.bench.cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
