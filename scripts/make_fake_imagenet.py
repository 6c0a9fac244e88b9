#!/usr/bin/env python
"""Write a generated ImageNet-like JPEG tree (console command: convattn-fake-imagenet). See --help.

Thin wrapper over ``convattn.bench.pipeline_cli.generate_main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.pipeline_cli import generate_main as main

if __name__ == "__main__":
    sys.exit(main())
