#!/usr/bin/env python
"""Print (or write into docs/convert.md) the parity table of the official-code fixtures. See --help.

Thin wrapper over ``convattn.convert.parity_cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.convert.parity_cli import main

if __name__ == "__main__":
    sys.exit(main())
