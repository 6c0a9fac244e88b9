#!/usr/bin/env python
"""Top-k predictions on image files from a checkpoint or a MINDIR (console command: convattn-infer). See --help.

Thin wrapper over ``convattn.deploy.infer_cli.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.deploy.infer_cli import main

if __name__ == "__main__":
    sys.exit(main())
