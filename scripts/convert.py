#!/usr/bin/env python
"""Official PyTorch checkpoint -> MindSpore .ckpt (console command: convattn-convert). See --help.

Thin wrapper over ``convattn.convert.__main__.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.convert.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
