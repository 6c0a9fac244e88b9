#!/usr/bin/env python
"""Convergence comparison of the attention cores on the quickstart digits. See --help.

Thin wrapper over ``convattn.engine.compare_attention.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.engine.compare_attention import main

if __name__ == "__main__":
    sys.exit(main())
