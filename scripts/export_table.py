#!/usr/bin/env python
"""Export every model to MINDIR and ONNX and print (or write into export/README.md) the export table. See --help.

Thin wrapper over ``convattn.bench.export_table.main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.export_table import main

if __name__ == "__main__":
    sys.exit(main())
