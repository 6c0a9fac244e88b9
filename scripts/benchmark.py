#!/usr/bin/env python
"""Inference speed harness (see ``python scripts/benchmark.py --help``): thin wrapper over convattn.bench."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import convattn  # noqa: E402,F401  (CPU speed default before MindSpore runs)
from convattn.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
