#!/usr/bin/env python
"""Input-pipeline throughput (console command: convattn-bench-pipeline). See --help.

Thin wrapper over ``convattn.bench.pipeline_cli.bench_main``;
needs the package importable (``pip install -e .``, or PYTHONPATH=src).
"""
import sys

from convattn.bench.pipeline_cli import bench_main as main

if __name__ == "__main__":
    sys.exit(main())
