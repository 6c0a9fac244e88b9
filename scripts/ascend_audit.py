#!/usr/bin/env python
"""Ascend operator audit (and, with --digits, the O2 digits training of the representatives). See --help.

Thin wrapper over ``convattn.bench.ascend_audit_cli.main`` (console command ``convattn-ascend-audit``);
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.ascend_audit_cli import main

if __name__ == "__main__":
    sys.exit(main())
