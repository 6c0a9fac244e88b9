#!/usr/bin/env python
"""Thin wrapper over convattn.bench.pipeline_cli.bench_main (see --help)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import convattn  # noqa: E402,F401  (CPU defaults before MindSpore runs anything)
from convattn.bench.pipeline_cli import bench_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench_main())
