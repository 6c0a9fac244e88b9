#!/usr/bin/env python
"""Write the quickstart digits as an ImageFolder tree (console command: convattn-prepare-digits). See --help.

Thin wrapper over ``convattn.engine.cli.prepare_digits_main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.engine.cli import prepare_digits_main as main

if __name__ == "__main__":
    sys.exit(main())
